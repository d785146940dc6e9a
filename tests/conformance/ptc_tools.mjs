// Programmatic tool calling through the agents package's own PTC tools
// (`run_tools_with_code`, `run_tools_with_bash`) and the workspace bash tool, with
// real LangChain tools defined here. RCE_BASE_URL_B (optional) is a second API
// process sharing the engine, the store and the token secret: continuations are
// then routed to it by a local proxy, so every resumed round runs on the other
// replica.

import http from 'node:http';

import {
  createBashExecutionTool,
  createBashProgrammaticToolCallingTool,
  createProgrammaticToolCallingTool,
} from '@librechat/agents';
import { tool } from '@langchain/core/tools';
import { z } from 'zod';

import { Checks, bearer, config, expect, invokeTool, invokeToolError, newUserId, show, toolStdout } from './lib.mjs';

const checks = new Checks('ptc_tools');
const user = newUserId();
const auth = () => bearer(user);

// --- tools the program calls, recording every invocation ---------------------------
const calls = [];
let inFlight = 0;
let maxInFlight = 0;
const record = async (name, input, fn) => {
  calls.push({ name, input });
  inFlight += 1;
  maxInFlight = Math.max(maxInFlight, inFlight);
  try {
    await new Promise((resolve) => setTimeout(resolve, 50));
    return fn();
  } finally {
    inFlight -= 1;
  }
};
const getWeather = tool(async ({ city }) => record('get_weather', { city }, () => JSON.stringify({ city, temp: city.length * 3 })), {
  name: 'get-weather',
  description: 'Weather of a city',
  schema: z.object({ city: z.string() }),
});
const failing = tool(async () => record('explode', {}, () => { throw new Error('the tool exploded'); }), {
  name: 'explode',
  description: 'Always fails',
  schema: z.object({}),
});
const mark = tool(async ({ label }) => record('mark', { label }, () => `marked ${label}`), {
  name: 'mark',
  description: 'Records a label',
  schema: z.object({ label: z.string() }),
});
const all = [getWeather, failing, mark];
const toolMap = new Map(all.map((t) => [t.name, t]));
const toolDefs = all.map((t) => ({ name: t.name, description: t.description, parameters: {} }));
const ctx = { toolMap, toolDefs };

// --- a proxy that sends continuations to replica B --------------------------------
async function startProxy(primary, secondary) {
  const seen = { primary: 0, secondary: 0 };
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const toB = secondary && body.includes('"continuation_token"');
    seen[toB ? 'secondary' : 'primary'] += 1;
    const target = new URL((toB ? secondary : primary) + req.url);
    const upstream = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => { res.writeHead(502); res.end(); });
    upstream.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, seen, close: () => server.close() };
}

const proxy = await startProxy(config.baseUrl, process.env.RCE_BASE_URL_B ?? '');
const base = proxy.url;
const ptc = createProgrammaticToolCallingTool({ baseUrl: base, authHeaders: auth, executionProfile: 'default' });
const bashPtc = createBashProgrammaticToolCallingTool({ baseUrl: base, authHeaders: auth, executionProfile: 'default' });

async function post(path, body, headers = {}) {
  const response = await fetch(`${config.baseUrl}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(await auth()), ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

await checks.run('one tool call returns its decoded result to Python', async () => {
  calls.length = 0;
  const { content } = await invokeTool(ptc, { code: 'w = await get_weather(city="Paris")\nprint(w["temp"], w["city"])' }, ctx);
  expect(toolStdout(content).trimEnd() === '15 Paris', `content was ${show(content)}`);
  expect(calls.length === 1 && calls[0].input.city === 'Paris', `calls were ${show(calls)}`);
});

await checks.run('three parallel calls reach the client in one round trip', async () => {
  calls.length = 0;
  maxInFlight = 0;
  const code = [
    'import asyncio',
    'rs = await asyncio.gather(*(get_weather(city=c) for c in ["a", "bb", "ccc"]))',
    'print([r["temp"] for r in rs])',
  ].join('\n');
  const before = proxy.seen.primary + proxy.seen.secondary;
  const { content } = await invokeTool(ptc, { code }, ctx);
  const requests = proxy.seen.primary + proxy.seen.secondary - before;
  expect(toolStdout(content).trimEnd() === '[3, 6, 9]', `content was ${show(content)}`);
  expect(calls.length === 3 && maxInFlight === 3, `calls ${show(calls)}, at most ${maxInFlight} at once`);
  expect(requests === 2, `${requests} HTTP requests (one start, one continuation expected)`);
});

await checks.run('a failing tool raises an exception the program catches', async () => {
  const code = 'try:\n    await explode()\nexcept Exception as e:\n    print("caught:", e)\nprint("after")';
  const { content } = await invokeTool(ptc, { code }, ctx);
  const out = toolStdout(content);
  expect(out.includes('caught:') && out.includes('the tool exploded') && out.trimEnd().endsWith('after'), `content was ${show(content)}`);
});

const fileRun = await checks.run('a program that writes a file prints once and returns the file', async () => {
  calls.length = 0;
  const code = [
    'print("before the calls")',
    'open("notes.txt", "a").write("one line\\n")',
    'for label in ["x", "y"]:',
    '    print(await mark(label=label))',
  ].join('\n');
  const { content, artifact } = await invokeTool(ptc, { code }, ctx);
  const out = toolStdout(content).trimEnd();
  expect(out === 'before the calls\nmarked x\nmarked y', `stdout was ${show(out)}`);
  expect(calls.length === 2, `calls were ${show(calls)}`);
  const file = (artifact.files ?? []).find((f) => f.name === 'notes.txt');
  expect(file, `files were ${show(artifact.files)}`);
  return { file, sessionId: artifact.session_id };
});

await checks.run('the written file holds one line (the program ran once)', async () => {
  const { file, sessionId } = checks.needs(fileRun, 'the file run');
  const response = await fetch(`${config.baseUrl}/download/${sessionId}/${file.id}?kind=user&id=${user}`, { headers: await auth() });
  const text = await response.text();
  expect(text === 'one line\n', `the file held ${show(text)}`);
});

await checks.run('bash PTC: tools are functions taking JSON, parallel with & and wait', async () => {
  calls.length = 0;
  const code = [
    `{ a=$(get_weather '{"city": "Rome"}'); printf '%s\\n' "$a" > /mnt/data/a.json; } &`,
    `{ b=$(get_weather '{"city": "Oslo"}'); printf '%s\\n' "$b" > /mnt/data/b.json; } &`,
    'wait',
    'cat /mnt/data/a.json /mnt/data/b.json',
    `explode '{}' || echo "explode failed as expected"`,
  ].join('\n');
  const { content } = await invokeTool(bashPtc, { code }, ctx);
  const out = toolStdout(content);
  expect(out.includes('"city":"Rome"') && out.includes('"city":"Oslo"'), `content was ${show(content)}`);
  expect(out.includes('explode failed as expected'), `content was ${show(content)}`);
  expect(calls.filter((c) => c.name === 'get_weather').length === 2, `calls were ${show(calls)}`);
});

await checks.run('workspace bash tool: files persist across calls in one workspace', async () => {
  const instance = 'ab'.repeat(32);
  const ws = () => createBashExecutionTool({
    user_id: user, authHeaders: auth, baseUrl: config.baseUrl, executionProfile: 'default',
    workspaceId: 'project-1', workspaceInstanceId: instance,
  });
  const first = await invokeTool(ws(), { command: 'echo kept > project.txt && echo written' });
  expect(toolStdout(first.content).includes('written'), `first was ${show(first.content)}`);
  const second = await invokeTool(ws(), { command: 'cat project.txt' });
  expect(toolStdout(second.content).trimEnd() === 'kept', `second was ${show(second.content)}`);
  const other = createBashExecutionTool({
    user_id: user, authHeaders: () => bearer(newUserId()), baseUrl: config.baseUrl, executionProfile: 'default',
    workspaceId: 'project-1', workspaceInstanceId: instance,
  });
  const foreign = await invokeTool(other, { command: 'ls project.txt 2>&1 || echo absent' });
  expect(toolStdout(foreign.content).includes('absent'), `another user saw ${show(foreign.content)}`);
});

await checks.run('cancel: aborting the call cancels the live run', async () => {
  calls.length = 0;
  const controller = new AbortController();
  const code = 'import time\ntime.sleep(4)\nawait mark(label="too late")';
  setTimeout(() => controller.abort(), 1500);
  let aborted = false;
  try {
    await ptc.invoke({ id: 'call_cancel', name: ptc.name, args: { code }, type: 'tool_call', ...ctx }, { signal: controller.signal });
  } catch {
    aborted = true;
  }
  expect(aborted, 'the tool did not abort');
  await new Promise((resolve) => setTimeout(resolve, 5000));
  expect(calls.length === 0, `the cancelled program still called ${show(calls)}`);
});

await checks.run('cancel route: bad id 400, unknown id 200 already_completed', async () => {
  const bad = await post('/exec/programmatic/cancel', { request_id: 'not ok!' });
  expect(bad.status === 400, `bad id gave ${bad.status} ${show(bad.body)}`);
  const unknown = await post('/exec/programmatic/cancel', { request_id: crypto.randomUUID() });
  expect(unknown.status === 200 && unknown.body.status === 'already_completed', `unknown gave ${unknown.status} ${show(unknown.body)}`);
});

await checks.run('a forged continuation token is refused with a 4xx', async () => {
  const forged = await post('/exec/programmatic', { continuation_token: 'eJx.abc', tool_results: [] });
  expect(forged.status === 400, `forged gave ${forged.status} ${show(forged.body)}`);
});

if (process.env.RCE_BASE_URL_B) {
  await checks.run('continuations were served by the second API process', async () => {
    expect(proxy.seen.secondary >= 4, `replica B served ${proxy.seen.secondary} requests`);
  });
}

proxy.close();
checks.finish();
