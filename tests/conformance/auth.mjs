// Credentials the server must refuse (the tools then throw "not authorized") and
// owner scoping: one LibreChat user never reaches another user's files.

import crypto from 'node:crypto';

import { createCodeExecutionTool, fetchSessionFiles } from '@librechat/agents';

import {
  deleteCodeEnvFile,
  downloadCodeOutputBuffer,
  expectHttpError,
  getSessionInfo,
  readSandboxFile,
  uploadCodeEnvFile,
} from './host.mjs';
import {
  Checks,
  NOT_AUTHORIZED,
  apiKeyHeaders,
  bearer,
  config,
  expect,
  invokeTool,
  invokeToolError,
  mintJwt,
  newUserId,
  show,
  trustedPublicKeyPem,
} from './lib.mjs';

const checks = new Checks('auth');
const base = config.baseUrl;
const alice = newUserId();
const bob = newUserId();
const now = () => Math.floor(Date.now() / 1000);

function tool(authHeaders, userId = alice) {
  return createCodeExecutionTool({ user_id: userId, authHeaders, baseUrl: base, executionProfile: 'default' });
}

async function refused(authHeaders) {
  const message = await invokeToolError(tool(authHeaders), { lang: 'py', code: 'print("must not run")' });
  expect(message.toLowerCase().includes(NOT_AUTHORIZED), `tool error was ${show(message)}`);
}

const BAD_CREDENTIALS = {
  'no credentials at all': undefined,
  'a wrong X-API-Key': { 'X-API-Key': `wrong-${crypto.randomUUID()}` },
  'an empty X-API-Key': { 'X-API-Key': '' },
  'a malformed Bearer token': { Authorization: 'Bearer not-a-jwt' },
  'a Bearer token that is a wrong opaque key': { Authorization: `Bearer wrong-${crypto.randomUUID()}` },
  'an expired JWT': () => bearer(alice, { claims: { iat: now() - 900, nbf: now() - 900, exp: now() - 600 } }),
  'a JWT not valid yet (nbf in 10 minutes)': () => bearer(alice, { claims: { nbf: now() + 600, exp: now() + 900 } }),
  'a JWT signed by another Ed25519 key': () =>
    bearer(alice, { key: crypto.generateKeyPairSync('ed25519').privateKey }),
  'a JWT with alg none': () => bearer(alice, { header: { alg: 'none' } }),
  'a JWT HS256-signed with the public key': () =>
    bearer(alice, { header: { alg: 'HS256' }, hmacSecret: trustedPublicKeyPem() }),
  'a JWT for another audience': () => bearer(alice, { claims: { aud: 'someone-else' } }),
  'a JWT from another issuer': () => bearer(alice, { claims: { iss: 'evil' } }),
  'a JWT without sub': () => bearer(undefined),
  'a JWT whose payload was altered after signing': () => {
    const [h, , s] = mintJwt({ sub: alice }).split('.');
    const forged = Buffer.from(JSON.stringify({ iss: 'librechat', aud: 'codeapi', sub: bob, tenant_id: config.tenant, exp: now() + 300 })).toString('base64url');
    return { Authorization: `Bearer ${h}.${forged}.${s}` };
  },
};

async function main() {
  for (const [label, headers] of Object.entries(BAD_CREDENTIALS)) {
    await checks.run(`execute_code with ${label} throws "not authorized"`, () => refused(headers));
  }

  await checks.run('a valid JWT still works (control)', async () => {
    const { content } = await invokeTool(tool(() => bearer(alice)), { lang: 'py', code: 'print("ok")' });
    expect(content.startsWith('stdout:\nok'), `content was ${show(content)}`);
  });

  await checks.run('host calls without credentials get 401/403', async () => {
    await expectHttpError(
      () => uploadCodeEnvFile({ baseUrl: base, userId: alice, authHeaders: {}, filename: 'x.txt', bytes: Buffer.from('x') }),
      [401, 403],
    );
    await expectHttpError(
      () => readSandboxFile({ baseUrl: base, file_path: '/etc/hostname', authHeaders: {} }),
      [401, 403],
    );
  });

  // --- owner scoping ---------------------------------------------------------------
  const owned = await checks.run('alice uploads a file and produces an output', async () => {
    const up = await uploadCodeEnvFile({
      baseUrl: base,
      userId: alice,
      authHeaders: bearer(alice),
      filename: 'secret.txt',
      bytes: Buffer.from('alice secret\n'),
    });
    const { artifact } = await invokeTool(tool(() => bearer(alice)), {
      lang: 'py',
      code: 'open("out.txt", "w").write("alice output\\n"); print("ok")',
    });
    const out = (artifact.files ?? []).find((f) => f.name === 'out.txt');
    expect(out, `files[] was ${show(artifact.files)}`);
    return {
      upload: up,
      output: { storage_session_id: out.storage_session_id ?? artifact.session_id, file_id: out.id },
    };
  });

  const crossCases = {
    'bob (same tenant, another sub)': { sub: bob, claims: {} },
    'alice\'s sub in another tenant': { sub: alice, claims: { tenant_id: `other-${newUserId()}` } },
  };

  for (const [who, identity] of Object.entries(crossCases)) {
    const headers = () => bearer(identity.sub, { claims: identity.claims });
    await checks.run(`${who} cannot download alice's upload or output`, async () => {
      const o = checks.needs(owned, "alice's files");
      for (const ref of [o.upload, o.output]) {
        await expectHttpError(
          () => downloadCodeOutputBuffer({ baseUrl: base, userId: identity.sub, session_id: ref.storage_session_id, id: ref.file_id, authHeaders: headers() }),
          [403, 404],
        );
        // Even naming alice as the resource id must not help.
        await expectHttpError(
          () => downloadCodeOutputBuffer({ baseUrl: base, userId: alice, session_id: ref.storage_session_id, id: ref.file_id, authHeaders: headers() }),
          [403, 404],
        );
      }
    });

    await checks.run(`${who} gets no session info and no listing for alice's session`, async () => {
      const o = checks.needs(owned, "alice's files");
      const ref = { kind: 'user', id: identity.sub, storage_session_id: o.upload.storage_session_id, file_id: o.upload.file_id };
      await expectHttpError(() => getSessionInfo({ baseUrl: base, ref, authHeaders: headers() }), [403, 404]);
      const listed = await fetchSessionFiles(base, o.upload.storage_session_id, { kind: 'user', id: identity.sub }, headers);
      expect(listed.length === 0, `listing leaked ${show(listed)}`);
    });

    await checks.run(`${who} cannot mount alice's file in an exec`, async () => {
      const o = checks.needs(owned, "alice's files");
      const ref = {
        id: o.upload.file_id,
        resource_id: alice,
        storage_session_id: o.upload.storage_session_id,
        name: 'secret.txt',
        kind: 'user',
      };
      let content = '';
      try {
        ({ content } = await invokeTool(
          tool(headers, identity.sub),
          { lang: 'bash', code: 'cat /mnt/data/secret.txt 2>&1 || echo missing' },
          { session_id: o.upload.storage_session_id, _injected_files: [ref] },
        ));
      } catch (error) {
        content = `refused: ${error.message}`;
      }
      expect(!content.includes('alice secret'), `bob read alice's file: ${show(content)}`);
    });

    await checks.run(`${who} cannot delete alice's file`, async () => {
      const o = checks.needs(owned, "alice's files");
      const ref = { kind: 'user', id: alice, storage_session_id: o.upload.storage_session_id, file_id: o.upload.file_id };
      await expectHttpError(
        () => deleteCodeEnvFile({ baseUrl: base, ref, authHeaders: headers(), tolerate404: false }),
        [403, 404],
      );
      const still = await downloadCodeOutputBuffer({
        baseUrl: base,
        userId: alice,
        session_id: o.upload.storage_session_id,
        id: o.upload.file_id,
        authHeaders: bearer(alice),
      });
      expect(still.toString('utf8') === 'alice secret\n', 'alice lost her file');
    });
  }

  await checks.run('an X-API-Key caller asserting another User-Id cannot read a key user\'s file', async () => {
    const up = await uploadCodeEnvFile({
      baseUrl: base,
      userId: alice,
      authHeaders: apiKeyHeaders(),
      filename: 'keyed.txt',
      bytes: Buffer.from('keyed secret'),
    });
    const own = await downloadCodeOutputBuffer({
      baseUrl: base,
      userId: alice,
      session_id: up.storage_session_id,
      id: up.file_id,
      authHeaders: { ...apiKeyHeaders(), 'User-Id': alice },
    });
    expect(own.toString('utf8') === 'keyed secret', 'owner could not read its own file');
    await expectHttpError(
      () => downloadCodeOutputBuffer({
        baseUrl: base,
        userId: bob,
        session_id: up.storage_session_id,
        id: up.file_id,
        authHeaders: { ...apiKeyHeaders(), 'User-Id': bob },
      }),
      [403, 404],
    );
  });

  checks.finish();
}

await main();
