// The agents package's own exec tools (`execute_code`, `bash_tool`) and
// `fetchSessionFiles`, driven against a live server the way LibreChat's ToolNode
// drives them: a ToolCall with `session_id` and `_injected_files`.

import {
  createBashExecutionTool,
  createCodeExecutionTool,
  createProgrammaticToolCallingTool,
  fetchSessionFiles,
} from '@librechat/agents';

import { downloadCodeOutputBuffer, legacyDownload } from './host.mjs';
import {
  Checks,
  apiKeyHeaders,
  bearer,
  config,
  expect,
  injectedRef,
  invokeTool,
  newUserId,
  parseSha256sum,
  sha256,
  show,
  toolStdout,
} from './lib.mjs';

const checks = new Checks('exec_tools');
const base = config.baseUrl;
const userA = newUserId();
const jwtA = () => bearer(userA);

/** The tool options LibreChat passes (`handleTools.js`), auth through `authHeaders`. */
function codeTool({ baseUrl = base, authHeaders = jwtA, userId = userA, extra = {} } = {}) {
  return createCodeExecutionTool({
    user_id: userId,
    authHeaders,
    baseUrl,
    codeSessionKey: 'execute_code',
    executionProfile: 'default',
    ...extra,
  });
}

function bashTool({ baseUrl = base, authHeaders = jwtA, userId = userA, extra = {} } = {}) {
  return createBashExecutionTool({
    user_id: userId,
    authHeaders,
    baseUrl,
    codeSessionKey: 'execute_code',
    executionProfile: 'default',
    ...extra,
  });
}

const CSV_TEXT = 'x,y\n1,1\n2,4\n3,9\n';
const OUTPUTS_CODE = `
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
with open("report.csv", "w") as fh:
    fh.write(${JSON.stringify(CSV_TEXT)})
xs = [1, 2, 3]
plt.plot(xs, [x * x for x in xs])
plt.title("squares")
plt.savefig("/mnt/data/plot.png")
print("wrote 2 files")
`;

function byName(files, name) {
  return (files ?? []).find((f) => f.name === name);
}

function generated(files) {
  return (files ?? []).filter((f) => f.inherited !== true);
}

async function main() {
  await checks.run('execute_code with a LibreChat JWT prints stdout', async () => {
    const { content, artifact } = await invokeTool(codeTool(), {
      lang: 'py',
      code: 'print(6 * 7)',
    });
    expect(content.startsWith('stdout:\n42'), `content was ${show(content)}`);
    expect(
      typeof artifact.session_id === 'string' && artifact.session_id !== '',
      `artifact has no session_id: ${show(artifact)}`,
    );
  });

  await checks.run('execute_code with the legacy X-API-Key (and the key in the body)', async () => {
    const tool = codeTool({
      authHeaders: apiKeyHeaders(),
      // Legacy LibreChat spread `...authValues` into the tool options, so the key also
      // travelled inside the JSON body.
      extra: { LIBRECHAT_CODE_API_KEY: config.apiKey },
    });
    const { content } = await invokeTool(tool, { lang: 'py', code: 'print("legacy ok")' });
    expect(content.startsWith('stdout:\nlegacy ok'), `content was ${show(content)}`);
  });

  await checks.run('bash_tool runs bash in /mnt/data with python3 on PATH', async () => {
    const { content, artifact } = await invokeTool(bashTool(), {
      command: 'echo "cwd=$(pwd)"; python3 -c "print(2 ** 10)"',
    });
    expect(content.includes('cwd=/mnt/data'), `content was ${show(content)}`);
    expect(content.includes('1024'), `content was ${show(content)}`);
    expect(typeof artifact.session_id === 'string', `artifact ${show(artifact)}`);
  });

  await checks.run('bash_tool forwards args to the command', async () => {
    const { content } = await invokeTool(bashTool(), {
      command: 'printf "<%s>" "$@"',
      args: ['a b', 'c'],
    });
    expect(content.includes('<a b><c>'), `content was ${show(content)}`);
  });

  await checks.run('execute_code forwards args (sys.argv)', async () => {
    const { content } = await invokeTool(codeTool(), {
      lang: 'py',
      code: 'import sys; print(sys.argv[1:])',
      args: ['one', 'two'],
    });
    expect(content.includes("['one', 'two']"), `content was ${show(content)}`);
  });

  await checks.run('a failing program is HTTP 200 with stderr, not a tool error', async () => {
    const { content } = await invokeTool(codeTool(), {
      lang: 'py',
      code: 'print("before")\n1/0',
    });
    expect(content.includes('stdout:\nbefore'), `content was ${show(content)}`);
    expect(content.includes('stderr:') && content.includes('ZeroDivisionError'), `content was ${show(content)}`);
  });

  await checks.run('bash exit status is reported through stderr/stdout only', async () => {
    const { content } = await invokeTool(bashTool(), { command: 'echo out; echo err >&2; exit 3' });
    expect(content.includes('stdout:\nout'), `content was ${show(content)}`);
    expect(content.includes('stderr:\nerr'), `content was ${show(content)}`);
  });

  await checks.run('empty stdout gives the client\'s "Empty" notice', async () => {
    const { content } = await invokeTool(codeTool(), { lang: 'py', code: 'x = 1' });
    expect(content.startsWith("stdout: Empty."), `content was ${show(content)}`);
  });

  // --- outputs -------------------------------------------------------------------
  const outputs = await checks.run('a CSV and a matplotlib PNG are returned in files[]', async () => {
    const { content, artifact } = await invokeTool(codeTool(), { lang: 'py', code: OUTPUTS_CODE });
    expect(content.includes('wrote 2 files'), `content was ${show(content)}`);
    const csv = byName(artifact.files, 'report.csv');
    const png = byName(artifact.files, 'plot.png');
    expect(csv && png, `files[] was ${show(artifact.files)}`);
    for (const f of [csv, png]) {
      expect(typeof f.id === 'string' && f.id !== '', `file without id: ${show(f)}`);
      expect(f.inherited !== true, `new output flagged inherited: ${show(f)}`);
    }
    expect(
      content.includes('Session files: 2 persisted file(s)') && content.includes('including 1 image(s)'),
      `file summary missing or wrong: ${show(content)}`,
    );
    return { session_id: artifact.session_id, files: artifact.files, csv, png };
  });

  const downloaded = await checks.run('outputs download byte-exact (?kind=user&id=)', async () => {
    const out = checks.needs(outputs, 'the outputs exec');
    const result = {};
    for (const f of [out.csv, out.png]) {
      const bytes = await downloadCodeOutputBuffer({
        baseUrl: base,
        userId: userA,
        session_id: f.storage_session_id ?? out.session_id,
        id: f.id,
        authHeaders: jwtA(),
      });
      result[f.name] = bytes;
    }
    expect(result['report.csv'].toString('utf8') === CSV_TEXT, `csv was ${show(result['report.csv'].toString('utf8'))}`);
    const png = result['plot.png'];
    expect(
      png.length > 1000 && png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])),
      `plot.png is not a PNG (${png.length} bytes)`,
    );
    return result;
  });

  const injected = outputs
    ? [outputs.csv, outputs.png].map((f) => injectedRef(f, outputs.session_id))
    : undefined;

  await checks.run('a follow-up execute_code sees the outputs (current refs), same sha256', async () => {
    const out = checks.needs(outputs, 'the outputs exec');
    const bytes = checks.needs(downloaded, 'the downloads');
    const { content, artifact } = await invokeTool(
      codeTool(),
      {
        lang: 'py',
        code: 'import subprocess\nprint(subprocess.run(["sha256sum", "report.csv", "plot.png"], capture_output=True, text=True).stdout)',
      },
      { session_id: out.session_id, _injected_files: injected },
    );
    const sums = parseSha256sum(toolStdout(content));
    expect(sums['report.csv'] === sha256(bytes['report.csv']), `report.csv sha mismatch: ${show(content)}`);
    expect(sums['plot.png'] === sha256(bytes['plot.png']), `plot.png sha mismatch: ${show(content)}`);
    const echoed = generated(artifact.files).map((f) => f.name);
    expect(
      !echoed.includes('report.csv') && !echoed.includes('plot.png'),
      `unchanged inputs came back as new outputs: ${show(artifact.files)}`,
    );
  });

  await checks.run('a follow-up bash_tool sees the outputs at /mnt/data/<name>', async () => {
    const out = checks.needs(outputs, 'the outputs exec');
    const { content } = await invokeTool(
      bashTool(),
      { command: 'cat /mnt/data/report.csv; sha256sum plot.png' },
      { session_id: out.session_id, _injected_files: injected },
    );
    expect(content.includes(CSV_TEXT.trim()), `content was ${show(content)}`);
    const png = checks.needs(downloaded, 'the downloads')['plot.png'];
    expect(content.includes(sha256(png)), `plot.png hash missing: ${show(content)}`);
  });

  await checks.run('a modified input is returned as a new output; the old ref keeps its bytes', async () => {
    const out = checks.needs(outputs, 'the outputs exec');
    const { artifact } = await invokeTool(
      bashTool(),
      { command: 'echo "4,16" >> report.csv && echo appended' },
      { session_id: out.session_id, _injected_files: injected },
    );
    const changed = byName(generated(artifact.files), 'report.csv');
    expect(changed, `modified report.csv not returned: ${show(artifact.files)}`);
    const fresh = await downloadCodeOutputBuffer({
      baseUrl: base,
      userId: userA,
      session_id: changed.storage_session_id ?? artifact.session_id,
      id: changed.id,
      authHeaders: jwtA(),
    });
    expect(fresh.toString('utf8') === `${CSV_TEXT}4,16\n`, `new version was ${show(fresh.toString('utf8'))}`);
    const old = await downloadCodeOutputBuffer({
      baseUrl: base,
      userId: userA,
      session_id: out.csv.storage_session_id ?? out.session_id,
      id: out.csv.id,
      authHeaders: jwtA(),
    });
    expect(old.toString('utf8') === CSV_TEXT, `old ref now gives ${show(old.toString('utf8'))}`);
  });

  await checks.run('a file deleted in the sandbox is reported in deleted_files or dropped', async () => {
    const out = checks.needs(outputs, 'the outputs exec');
    const { artifact } = await invokeTool(
      bashTool(),
      { command: 'rm /mnt/data/plot.png && ls /mnt/data' },
      { session_id: out.session_id, _injected_files: injected },
    );
    const stillThere = generated(artifact.files).some((f) => f.name === 'plot.png');
    expect(!stillThere, `deleted plot.png returned as output: ${show(artifact.files)}`);
    if (artifact.deleted_files != null) {
      expect(Array.isArray(artifact.deleted_files), `deleted_files: ${show(artifact.deleted_files)}`);
    }
  });

  await checks.run('nested output paths are kept relative to /mnt/data', async () => {
    const { artifact } = await invokeTool(bashTool(), {
      command: 'mkdir -p out/sub && echo \'{"a": 1}\' > out/sub/data.json && echo ok',
    });
    const nested = byName(artifact.files, 'out/sub/data.json');
    expect(nested, `files[] was ${show(artifact.files)}`);
    const { content } = await invokeTool(
      bashTool(),
      { command: 'cat /mnt/data/out/sub/data.json' },
      { session_id: artifact.session_id, _injected_files: [injectedRef(nested, artifact.session_id)] },
    );
    expect(content.includes('{"a": 1}'), `content was ${show(content)}`);
  });

  // --- fetchSessionFiles ---------------------------------------------------------
  await checks.run('fetchSessionFiles (user scope) lists the session outputs', async () => {
    const out = checks.needs(outputs, 'the outputs exec');
    const sid = out.csv.storage_session_id ?? out.session_id;
    const files = await fetchSessionFiles(base, sid, { kind: 'user', id: userA }, jwtA);
    const ids = files.map((f) => f.id);
    for (const f of [out.csv, out.png]) {
      const entry = files.find((e) => e.id === f.id);
      expect(entry, `${f.name} (${f.id}) missing from ${show(files)}`);
      expect(entry.name === f.name, `name ${show(entry.name)} != ${f.name}`);
      expect(entry.storage_session_id === sid, `storage_session_id ${entry.storage_session_id} != ${sid}`);
    }
    expect(new Set(ids).size === ids.length, `duplicate ids: ${show(ids)}`);
  });

  await checks.run('fetchSessionFiles (legacy signature, no scope) lists the outputs', async () => {
    const out = checks.needs(outputs, 'the outputs exec');
    const sid = out.csv.storage_session_id ?? out.session_id;
    const files = await fetchSessionFiles(base, sid, undefined, jwtA());
    expect(files.some((e) => e.id === out.png.id && e.name === 'plot.png'), `got ${show(files)}`);
  });

  // --- programmatic tool calling without tools: plain /exec ------------------------
  await checks.run('run_tools_with_code without tools falls back to /exec (timeout ms, session_id in body)', async () => {
    const out = checks.needs(outputs, 'the outputs exec');
    const ptc = createProgrammaticToolCallingTool({ baseUrl: base, authHeaders: jwtA, executionProfile: 'default' });
    const { content } = await invokeTool(
      ptc,
      { code: 'import asyncio\nawait asyncio.sleep(0)\nprint(open("report.csv").read().splitlines()[0])', tool_manifest: [] },
      { session_id: out.session_id, _injected_files: injected, toolDefs: [], toolMap: new Map() },
    );
    expect(content.startsWith('stdout:\nx,y'), `content was ${show(content)}`);
  });

  // --- legacy file refs ({id, session_id, name}) with the legacy key --------------
  await checks.run('legacy X-API-Key outputs are seen again through legacy refs {id, session_id, name}', async () => {
    const keyTool = codeTool({ authHeaders: apiKeyHeaders() });
    const first = await invokeTool(keyTool, {
      lang: 'py',
      code: 'open("legacy.txt", "w").write("legacy bytes\\n"); print("done")',
    });
    const legacyFile = byName(first.artifact.files, 'legacy.txt');
    expect(legacyFile, `files[] was ${show(first.artifact.files)}`);
    const sid = legacyFile.storage_session_id ?? first.artifact.session_id;
    const bytes = await legacyDownload({
      baseUrl: base,
      fileIdentifier: `${sid}/${legacyFile.id}`,
      apiKey: config.apiKey,
    });
    expect(bytes.toString('utf8') === 'legacy bytes\n', `legacy download gave ${show(bytes.toString('utf8'))}`);
    // The legacy tool put the primed files into the body through its options.
    const followUp = codeTool({
      authHeaders: apiKeyHeaders(),
      extra: { files: [{ id: legacyFile.id, session_id: sid, name: 'legacy.txt' }] },
    });
    const { content } = await invokeTool(followUp, {
      lang: 'py',
      code: 'print(open("/mnt/data/legacy.txt").read().strip())',
    });
    expect(content.startsWith('stdout:\nlegacy bytes'), `content was ${show(content)}`);
  });

  // --- base URL with /v1 ---------------------------------------------------------
  await checks.run('a base URL ending in /v1 works for exec and download', async () => {
    const v1 = `${base}/v1`;
    const { artifact } = await invokeTool(codeTool({ baseUrl: v1 }), {
      lang: 'py',
      code: 'open("v1.txt", "w").write("via v1"); print("ok")',
    });
    const f = byName(artifact.files, 'v1.txt');
    expect(f, `files[] was ${show(artifact.files)}`);
    const bytes = await downloadCodeOutputBuffer({
      baseUrl: v1,
      userId: userA,
      session_id: f.storage_session_id ?? artifact.session_id,
      id: f.id,
      authHeaders: jwtA(),
    });
    expect(bytes.toString('utf8') === 'via v1', `download gave ${show(bytes.toString('utf8'))}`);
    const { content } = await invokeTool(bashTool({ baseUrl: `${v1}/` }), { command: 'echo slash-ok' });
    expect(content.includes('slash-ok'), `content was ${show(content)}`);
  });

  checks.finish();
}

await main();
