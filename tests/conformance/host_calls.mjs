// LibreChat's host-side calls of both generations (upload, batch upload, freshness
// checks, download, delete, read/write through /exec), with the exact headers and
// form fields of LibreChat's own code.

import { createCodeExecutionTool } from '@librechat/agents';
import axios from 'axios';

import {
  batchUploadCodeEnvFiles,
  checkCodeEnvFileAlive,
  checkIfActive,
  deleteCodeEnvFile,
  downloadCodeOutputBuffer,
  expectHttpError,
  getSessionInfo,
  legacyDownload,
  legacyGetSessionInfo,
  legacyUploadCodeEnvFile,
  readSandboxFile,
  uploadCodeEnvFile,
  writeSandboxFile,
} from './host.mjs';
import {
  Checks,
  LIBRECHAT_UA,
  apiKeyHeaders,
  bearer,
  config,
  expect,
  invokeTool,
  newUserId,
  sha256,
  show,
  toolStdout,
} from './lib.mjs';

const checks = new Checks('host_calls');
const base = config.baseUrl;
const user = newUserId();
const jwt = () => bearer(user);

const DATA_CSV = Buffer.from('name,score\nada,3\nbob,5\n');
const BINARY = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 37 + 11) % 256));

function refOf(upload) {
  return { kind: 'user', id: user, storage_session_id: upload.storage_session_id, file_id: upload.file_id };
}

/** An exec file ref as `primeFiles` builds it for an uploaded attachment. */
function primedRef(upload, name) {
  return {
    id: upload.file_id,
    resource_id: user,
    storage_session_id: upload.storage_session_id,
    name,
    kind: 'user',
  };
}

function ageHours(lastModified) {
  return (Date.now() - new Date(lastModified).getTime()) / 3600000;
}

async function main() {
  // --- current generation ----------------------------------------------------------
  const upload = await checks.run('current upload (kind, id, file; User-Id; Bearer) returns storage_session_id and fileId', async () => {
    const result = await uploadCodeEnvFile({
      baseUrl: base,
      userId: user,
      authHeaders: jwt(),
      filename: 'data.csv',
      bytes: DATA_CSV,
    });
    expect(typeof result.storage_session_id === 'string' && result.storage_session_id !== '', `response ${show(result.raw)}`);
    expect(typeof result.file_id === 'string' && result.file_id !== '', `response ${show(result.raw)}`);
    expect(result.raw.files[0].filename === 'data.csv', `filename ${show(result.raw.files[0])}`);
    expect(
      result.raw.session_id === undefined || result.raw.session_id === result.storage_session_id,
      `session_id differs from storage_session_id: ${show(result.raw)}`,
    );
    return result;
  });

  await checks.run('session info /sessions/{sid}/objects/{fid}?kind=user&id= gives a fresh lastModified', async () => {
    const up = checks.needs(upload, 'the upload');
    const lastModified = await getSessionInfo({
      baseUrl: base,
      ref: refOf(up),
      authHeaders: jwt(),
      executionProfile: 'default',
    });
    expect(typeof lastModified === 'string', `lastModified was ${show(lastModified)}`);
    expect(!Number.isNaN(new Date(lastModified).getTime()), `unparseable lastModified ${lastModified}`);
    expect(checkIfActive(lastModified), `checkIfActive false for ${lastModified}`);
    const age = ageHours(lastModified);
    expect(age < 0.5 && age > -0.05, `lastModified ${lastModified} is ${age.toFixed(3)} h old`);
  });

  await checks.run('download ?kind=user&id= returns the uploaded bytes', async () => {
    const up = checks.needs(upload, 'the upload');
    const bytes = await downloadCodeOutputBuffer({
      baseUrl: base,
      userId: user,
      session_id: up.storage_session_id,
      id: up.file_id,
      authHeaders: jwt(),
    });
    expect(bytes.equals(DATA_CSV), `got ${show(bytes.toString('utf8'))}`);
  });

  await checks.run('execute_code sees the upload through the primed ref', async () => {
    const up = checks.needs(upload, 'the upload');
    const tool = createCodeExecutionTool({ user_id: user, authHeaders: jwt, baseUrl: base, executionProfile: 'default' });
    const { content, artifact } = await invokeTool(
      tool,
      { lang: 'py', code: 'import csv\nrows = list(csv.DictReader(open("/mnt/data/data.csv")))\nprint(sum(int(r["score"]) for r in rows))' },
      { session_id: up.storage_session_id, _injected_files: [primedRef(up, 'data.csv')] },
    );
    expect(content.startsWith('stdout:\n8'), `content was ${show(content)}`);
    const echoed = (artifact.files ?? []).filter((f) => f.inherited !== true && f.name === 'data.csv');
    expect(echoed.length === 0, `unchanged input returned as a new output: ${show(artifact.files)}`);
  });

  await checks.run('readSandboxFile: POST /exec {lang:bash, code:cat, session_id, files}', async () => {
    const up = checks.needs(upload, 'the upload');
    const result = await readSandboxFile({
      baseUrl: base,
      file_path: '/mnt/data/data.csv',
      session_id: up.storage_session_id,
      files: [primedRef(up, 'data.csv')],
      authHeaders: jwt(),
    });
    expect(result?.content === DATA_CSV.toString('utf8'), `read ${show(result)}`);
  });

  await checks.run('readSandboxFile of a missing path gives stderr with empty stdout', async () => {
    let message = '';
    try {
      await readSandboxFile({ baseUrl: base, file_path: "/mnt/data/it's-missing.txt", authHeaders: jwt() });
    } catch (error) {
      message = error.message;
    }
    expect(/No such file/i.test(message), `error was ${show(message)}`);
  });

  await checks.run('writeSandboxFile (python3 heredoc) registers the written file', async () => {
    const result = await writeSandboxFile({
      baseUrl: base,
      file_path: '/mnt/data/notes/hello.md',
      content: '# hi\n',
      authHeaders: jwt(),
    });
    expect(result.stdout?.startsWith('WROTE 5 bytes to /mnt/data/notes/hello.md'), `stdout ${show(result)}`);
    const written = (result.files ?? []).find((f) => f.name === 'notes/hello.md');
    expect(written, `files[] was ${show(result.files)}`);
    const bytes = await downloadCodeOutputBuffer({
      baseUrl: base,
      userId: user,
      session_id: written.storage_session_id ?? result.session_id,
      id: written.id,
      authHeaders: jwt(),
    });
    expect(bytes.toString('utf8') === '# hi\n', `download gave ${show(bytes.toString('utf8'))}`);
  });

  await checks.run('binary upload round-trips byte-exact and hashes the same in the sandbox', async () => {
    const up = await uploadCodeEnvFile({ baseUrl: base, userId: user, authHeaders: jwt(), filename: 'blob.bin', bytes: BINARY });
    const back = await downloadCodeOutputBuffer({
      baseUrl: base,
      userId: user,
      session_id: up.storage_session_id,
      id: up.file_id,
      authHeaders: jwt(),
    });
    expect(back.equals(BINARY), `download differs (${back.length} bytes)`);
    // `cat` of binary through JSON is lossy by design; compare hashes instead.
    const tool = createCodeExecutionTool({ user_id: user, authHeaders: jwt, baseUrl: base });
    const { content } = await invokeTool(
      tool,
      { lang: 'bash', code: 'sha256sum blob.bin' },
      { session_id: up.storage_session_id, _injected_files: [primedRef(up, 'blob.bin')] },
    );
    expect(toolStdout(content).includes(sha256(BINARY)), `content was ${show(content)}`);
  });

  await checks.run('nested upload (form-data filepath) lands at the nested /mnt/data path', async () => {
    const up = await uploadCodeEnvFile({
      baseUrl: base,
      userId: user,
      authHeaders: jwt(),
      filename: 'inputs/raw/data.csv',
      bytes: DATA_CSV,
    });
    const read = await readSandboxFile({
      baseUrl: base,
      file_path: '/mnt/data/inputs/raw/data.csv',
      files: [primedRef(up, 'inputs/raw/data.csv')],
      authHeaders: jwt(),
    });
    expect(read?.content === DATA_CSV.toString('utf8'), `read ${show(read)}`);
  });

  const listing = (up, detail) => {
    const params = new URLSearchParams({ kind: 'user', id: user });
    if (detail) {
      params.set('detail', detail);
    }
    return axios.get(`${base}/files/${up.storage_session_id}?${params}`, {
      headers: { 'User-Agent': LIBRECHAT_UA, ...jwt() },
      timeout: 5000,
    });
  };

  await checks.run('/files/{sid}?detail=full names {sid}/{fileId}… and carries metadata original-filename', async () => {
    const up = checks.needs(upload, 'the upload');
    const { data } = await listing(up, 'full');
    const entry = data.find((f) => String(f.name).startsWith(`${up.storage_session_id}/${up.file_id}`));
    expect(entry, `detail=full ${show(data)}`);
    expect(entry.metadata?.['original-filename'] === 'data.csv', `metadata ${show(entry.metadata)}`);
    expect(checkIfActive(entry.lastModified), `lastModified ${show(entry.lastModified)}`);
  });

  await checks.run('/files/{sid}?detail=simple|normalized shapes', async () => {
    const up = checks.needs(upload, 'the upload');
    const simple = (await listing(up, undefined)).data;
    expect(Array.isArray(simple) && simple.length > 0 && simple.every((n) => typeof n === 'string'), `simple ${show(simple)}`);
    const normalized = (await listing(up, 'normalized')).data;
    const norm = normalized.find((f) => f.id === up.file_id);
    expect(norm && norm.name === 'data.csv' && norm.storage_session_id === up.storage_session_id, `normalized ${show(normalized)}`);
  });

  await checks.run('summary items carry fileId (LibreChat checkCodeEnvFileAlive / checkSessionsAlive)', async () => {
    const up = checks.needs(upload, 'the upload');
    const alive = await checkCodeEnvFileAlive({ baseUrl: base, ref: refOf(up), headers: jwt() });
    const { data } = await listing(up, 'summary');
    expect(alive, `no summary item has fileId ${up.file_id}: ${show(data)}`);
  });

  await checks.run('upload/batch returns storage_session_id and one success per file', async () => {
    const result = await batchUploadCodeEnvFiles({
      baseUrl: base,
      userId: user,
      authHeaders: jwt(),
      files: [
        { filename: 'a.txt', bytes: Buffer.from('alpha') },
        { filename: 'b.txt', bytes: Buffer.from('beta') },
      ],
    });
    expect(result.raw.message === 'success', `message ${show(result.raw)}`);
    expect(result.files.length === 2 && result.raw.succeeded === 2 && result.raw.failed === 0, `batch ${show(result.raw)}`);
    const tool = createCodeExecutionTool({ user_id: user, authHeaders: jwt, baseUrl: base });
    const refs = result.files.map((f) => ({
      id: f.fileId,
      resource_id: user,
      storage_session_id: result.storage_session_id,
      name: f.filename,
      kind: 'user',
    }));
    const { content } = await invokeTool(
      tool,
      { lang: 'bash', code: 'cat a.txt; echo; cat b.txt' },
      { session_id: result.storage_session_id, _injected_files: refs },
    );
    expect(content.startsWith('stdout:\nalpha\nbeta'), `content was ${show(content)}`);
  });

  await checks.run('agent files (kind=agent) are shared with another user of the tenant', async () => {
    const agentId = `agent_${newUserId()}`;
    const up = await uploadCodeEnvFile({
      baseUrl: base,
      userId: user,
      authHeaders: jwt(),
      filename: 'agent.md',
      bytes: Buffer.from('agent knowledge'),
      kind: 'agent',
      id: agentId,
    });
    const other = newUserId();
    const otherJwt = () => bearer(other);
    const ref = { kind: 'agent', id: agentId, storage_session_id: up.storage_session_id, file_id: up.file_id };
    const lastModified = await getSessionInfo({ baseUrl: base, ref, authHeaders: otherJwt() });
    expect(checkIfActive(lastModified), `lastModified ${show(lastModified)}`);
    const read = await readSandboxFile({
      baseUrl: base,
      file_path: '/mnt/data/agent.md',
      files: [{ id: up.file_id, resource_id: agentId, storage_session_id: up.storage_session_id, name: 'agent.md', kind: 'agent' }],
      authHeaders: otherJwt(),
    });
    expect(read?.content === 'agent knowledge', `read ${show(read)}`);
  });

  const skill = await checks.run('skill batch (kind=skill, version, read_only) mounts for the skill ref', async () => {
    const skillId = `skill_${newUserId()}`;
    const result = await batchUploadCodeEnvFiles({
      baseUrl: base,
      userId: user,
      authHeaders: jwt(),
      files: [{ filename: 'SKILL.md', bytes: Buffer.from('# skill v3\n') }],
      kind: 'skill',
      id: skillId,
      version: 3,
      read_only: true,
    });
    expect(result.files.length === 1, `batch ${show(result.raw)}`);
    const ref = {
      id: result.files[0].fileId,
      resource_id: skillId,
      storage_session_id: result.storage_session_id,
      name: 'skills/demo/SKILL.md',
      kind: 'skill',
      version: 3,
    };
    const read = await readSandboxFile({
      baseUrl: base,
      file_path: '/mnt/data/skills/demo/SKILL.md',
      files: [ref],
      authHeaders: jwt(),
    });
    expect(read?.content === '# skill v3\n', `read ${show(read)}`);
    return ref;
  });

  await checks.run('a read-only (skill) input changed by code is not returned as a new output', async () => {
    const ref = checks.needs(skill, 'the skill batch');
    const tool = createCodeExecutionTool({ user_id: user, authHeaders: jwt, baseUrl: base });
    const { artifact } = await invokeTool(
      tool,
      { lang: 'bash', code: 'echo tampered >> skills/demo/SKILL.md; echo done' },
      { session_id: ref.storage_session_id, _injected_files: [ref] },
    );
    const fresh = (artifact.files ?? []).filter((f) => f.name === 'skills/demo/SKILL.md' && f.inherited !== true);
    expect(fresh.length === 0, `read-only input came back as a new output: ${show(artifact.files)}`);
  });

  await checks.run('delete /files/{sid}/{fid}?kind=user&id= removes the file (then 404)', async () => {
    const up = await uploadCodeEnvFile({ baseUrl: base, userId: user, authHeaders: jwt(), filename: 'gone.txt', bytes: Buffer.from('bye') });
    const status = await deleteCodeEnvFile({ baseUrl: base, ref: refOf(up), authHeaders: jwt(), tolerate404: false });
    expect(status >= 200 && status < 300, `delete status ${status}`);
    await expectHttpError(
      () => downloadCodeOutputBuffer({ baseUrl: base, userId: user, session_id: up.storage_session_id, id: up.file_id, authHeaders: jwt() }),
      [404],
    );
    await expectHttpError(() => getSessionInfo({ baseUrl: base, ref: refOf(up), authHeaders: jwt() }), [404]);
    const again = await deleteCodeEnvFile({ baseUrl: base, ref: refOf(up), authHeaders: jwt() });
    expect(again === 404 || (again >= 200 && again < 300), `second delete ${again}`);
  });

  await checks.run('/v1 prefix works for upload, session info and download', async () => {
    const v1 = `${base}/v1`;
    const up = await uploadCodeEnvFile({ baseUrl: v1, userId: user, authHeaders: jwt(), filename: 'v1.csv', bytes: DATA_CSV });
    const lastModified = await getSessionInfo({ baseUrl: v1, ref: refOf(up), authHeaders: jwt() });
    expect(checkIfActive(lastModified), `lastModified ${show(lastModified)}`);
    const bytes = await downloadCodeOutputBuffer({ baseUrl: v1, userId: user, session_id: up.storage_session_id, id: up.file_id, authHeaders: jwt() });
    expect(bytes.equals(DATA_CSV), 'download differs');
  });

  await checks.run('X-API-Key and Bearer together (LibreChat provision buildCodeApiHeaders) are accepted', async () => {
    const headers = { ...apiKeyHeaders(), ...jwt() };
    const up = await uploadCodeEnvFile({ baseUrl: base, userId: user, authHeaders: headers, filename: 'both.txt', bytes: Buffer.from('both') });
    expect(up.file_id, 'no file id');
  });

  // --- legacy generation -----------------------------------------------------------
  const legacy = await checks.run('legacy upload (file only; X-API-Key) returns session_id and fileId', async () => {
    const result = await legacyUploadCodeEnvFile({
      baseUrl: base,
      userId: user,
      apiKey: config.apiKey,
      filename: 'legacy.csv',
      bytes: DATA_CSV,
    });
    expect(typeof result.session_id === 'string' && result.session_id !== '', `response ${show(result.raw)}`);
    expect(typeof result.file_id === 'string' && result.file_id !== '', `response ${show(result.raw)}`);
    return result;
  });

  await checks.run('legacy freshness: /files/{sid}?detail=summary item named {sid}/{fileId}…', async () => {
    const up = checks.needs(legacy, 'the legacy upload');
    const lastModified = await legacyGetSessionInfo({ baseUrl: base, fileIdentifier: up.fileIdentifier, apiKey: config.apiKey });
    expect(typeof lastModified === 'string' && checkIfActive(lastModified), `lastModified ${show(lastModified)}`);
    expect(ageHours(lastModified) < 0.5, `lastModified ${lastModified} is not recent`);
  });

  await checks.run('legacy download /download/{sid}/{fid} with X-API-Key', async () => {
    const up = checks.needs(legacy, 'the legacy upload');
    const bytes = await legacyDownload({ baseUrl: base, fileIdentifier: up.fileIdentifier, apiKey: config.apiKey });
    expect(bytes.equals(DATA_CSV), `got ${show(bytes.toString('utf8'))}`);
  });

  await checks.run('legacy exec ref {id, session_id, name} mounts the legacy upload', async () => {
    const up = checks.needs(legacy, 'the legacy upload');
    const result = await readSandboxFile({
      baseUrl: base,
      file_path: '/mnt/data/legacy.csv',
      files: [{ id: up.file_id, session_id: up.session_id, name: 'legacy.csv' }],
      authHeaders: apiKeyHeaders(),
      executionProfile: undefined,
    });
    expect(result?.content === DATA_CSV.toString('utf8'), `read ${show(result)}`);
  });

  await checks.run('legacy upload with entity_id, freshness with ?entity_id=', async () => {
    const agentId = `agent_${newUserId()}`;
    const up = await legacyUploadCodeEnvFile({
      baseUrl: base,
      userId: user,
      apiKey: config.apiKey,
      filename: 'agent.txt',
      bytes: Buffer.from('agent file'),
      entity_id: agentId,
    });
    expect(up.fileIdentifier.endsWith(`?entity_id=${agentId}`), `identifier ${up.fileIdentifier}`);
    const lastModified = await legacyGetSessionInfo({ baseUrl: base, fileIdentifier: up.fileIdentifier, apiKey: config.apiKey });
    expect(typeof lastModified === 'string' && checkIfActive(lastModified), `lastModified ${show(lastModified)}`);
  });

  checks.finish();
}

await main();
