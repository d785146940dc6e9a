// Shared helpers for the conformance scripts: configuration, LibreChat-style JWTs,
// the check recorder and the small wire helpers LibreChat's host code uses.
//
// Environment:
//   RCE_BASE_URL               base URL of the live server (no trailing /v1 needed)
//   RCE_API_KEY                the X-API-Key the server accepts (legacy LibreChat)
//   RCE_JWT_PRIVATE_KEY_FILE   Ed25519 private key (PKCS#8 PEM) whose public half the
//                              server trusts; tokens are minted as LibreChat mints them
//   RCE_JWT_TENANT             tenant_id claim (default "legacy", LibreChat's default)

import crypto from 'node:crypto';
import fs from 'node:fs';

export const RESULT_MARKER = 'CONFORMANCE_RESULT ';
export const LIBRECHAT_UA = 'LibreChat/1.0';
export const DEFAULT_KID = 'lc-codeapi-2026-05';
export const NOT_AUTHORIZED = 'not authorized';

function requireEnv(name) {
  const value = process.env[name];
  if (value == null || value === '') {
    throw new Error(`${name} must be set`);
  }
  return value;
}

export const config = {
  baseUrl: requireEnv('RCE_BASE_URL').replace(/\/+$/, ''),
  apiKey: process.env.RCE_API_KEY ?? '',
  privateKeyPem: process.env.RCE_JWT_PRIVATE_KEY_FILE
    ? fs.readFileSync(process.env.RCE_JWT_PRIVATE_KEY_FILE, 'utf8')
    : '',
  tenant: process.env.RCE_JWT_TENANT ?? 'legacy',
};

/** A unique LibreChat-looking user id (24 hex chars, like a Mongo ObjectId). */
export function newUserId() {
  return crypto.randomBytes(12).toString('hex');
}

function b64url(input) {
  return Buffer.from(input).toString('base64url');
}

/**
 * Mint a JWT shaped like LibreChat's `packages/api/src/auth/codeapi.ts` output.
 * `claims` and `header` override the defaults; `key` (a KeyObject or PEM) defaults to
 * the trusted private key. `alg: 'none'` and HS256 are supported to forge tokens.
 */
export function mintJwt({ sub, claims = {}, header = {}, key, hmacSecret } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const fullHeader = { alg: 'EdDSA', typ: 'JWT', kid: DEFAULT_KID, ...header };
  const merged = {
    iss: 'librechat',
    aud: 'codeapi',
    sub,
    iat: now,
    nbf: now,
    exp: now + 300,
    jti: crypto.randomUUID(),
    tenant_id: config.tenant,
    role: 'USER',
    principal_source: 'librechat_jwt',
    ...claims,
  };
  // LibreChat's canonicalContextHash over the identity claims.
  const payload = {
    ...merged,
    auth_context_hash:
      claims.auth_context_hash ??
      crypto
        .createHash('sha256')
        .update(
          JSON.stringify({
            chc_user_id: '',
            org_id: '',
            principal_source: merged.principal_source,
            role: merged.role,
            service_id: '',
            sub: merged.sub ?? '',
            tenant_id: merged.tenant_id,
          }),
        )
        .digest('hex'),
  };
  for (const [name, value] of Object.entries(payload)) {
    if (value === undefined) delete payload[name];
  }
  const signingInput = `${b64url(JSON.stringify(fullHeader))}.${b64url(JSON.stringify(payload))}`;
  let signature;
  if (fullHeader.alg === 'none') {
    signature = Buffer.alloc(0);
  } else if (fullHeader.alg === 'HS256') {
    signature = crypto.createHmac('sha256', hmacSecret).update(signingInput).digest();
  } else {
    const signingKey = key ?? config.privateKeyPem;
    if (!signingKey) {
      throw new Error('RCE_JWT_PRIVATE_KEY_FILE must be set to mint tokens');
    }
    signature = crypto.sign(null, Buffer.from(signingInput), signingKey);
  }
  return `${signingInput}.${b64url(signature)}`;
}

/** `Authorization: Bearer` headers for `sub`, as current LibreChat sends them. */
export function bearer(sub, options = {}) {
  return { Authorization: `Bearer ${mintJwt({ sub, ...options })}` };
}

/** The legacy `X-API-Key` header. */
export function apiKeyHeaders(key = config.apiKey) {
  if (!key) {
    throw new Error('RCE_API_KEY must be set for legacy checks');
  }
  return { 'X-API-Key': key };
}

/** The public half of the trusted key, as PEM (used to forge an HS256 token). */
export function trustedPublicKeyPem() {
  return crypto
    .createPublicKey(config.privateKeyPem)
    .export({ type: 'spki', format: 'pem' })
    .toString();
}

export function sha256(bytes) {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

export function fail(message) {
  throw new Error(message);
}

export function expect(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

/** Short, readable description of a value for failure messages. */
export function show(value, limit = 600) {
  let text;
  try {
    text = typeof value === 'string' ? value : String(JSON.stringify(value));
  } catch {
    text = String(value);
  }
  return text.length > limit ? `${text.slice(0, limit)}…` : text;
}

/**
 * Records named checks. `run` executes one check and returns its value (or undefined
 * when it failed); later checks that need it call `needs` and are marked as blocked.
 */
export class Checks {
  constructor(script) {
    this.script = script;
    this.results = [];
  }

  async run(name, fn) {
    const started = Date.now();
    try {
      const value = await fn();
      this.results.push({ name, ok: true, ms: Date.now() - started });
      return value;
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      this.results.push({ name, ok: false, ms: Date.now() - started, detail });
      process.stderr.write(`FAIL ${this.script}: ${name}: ${detail}\n${error?.stack ?? ''}\n`);
      return undefined;
    }
  }

  /** Throw a "blocked" error when a value an earlier check should give is missing. */
  needs(value, what) {
    if (value === undefined || value === null) {
      throw new Error(`blocked: ${what} is unavailable (an earlier check failed)`);
    }
    return value;
  }

  finish() {
    const failed = this.results.filter((r) => !r.ok);
    process.stdout.write(
      `${RESULT_MARKER}${JSON.stringify({ script: this.script, results: this.results })}\n`,
    );
    process.exitCode = failed.length > 0 ? 1 : 0;
  }
}

/**
 * Invoke a LangChain tool the way LibreChat's ToolNode does: with a ToolCall, so the
 * `content_and_artifact` tool returns a ToolMessage. `extra` carries the ToolNode's
 * additions (`session_id`, `_injected_files`).
 */
export async function invokeTool(tool, args, extra = {}) {
  const message = await tool.invoke({
    id: `call_${crypto.randomUUID().replace(/-/g, '').slice(0, 24)}`,
    name: tool.name,
    args,
    type: 'tool_call',
    ...extra,
  });
  return { content: message.content, artifact: message.artifact ?? {}, message };
}

/** Invoke a tool that must throw; returns the error message (fails when it does not throw). */
export async function invokeToolError(tool, args, extra = {}) {
  try {
    const { content } = await invokeTool(tool, args, extra);
    throw new Error(`expected the tool to throw, it returned: ${show(content)}`);
  } catch (error) {
    if (error instanceof Error && error.message.startsWith('expected the tool to throw')) {
      throw error;
    }
    return error instanceof Error ? error.message : String(error);
  }
}

/** ToolNode's `toInjectedFileRef`: the current file-ref shape sent in exec `files[]`. */
export function injectedRef(file, execSessionId) {
  return {
    id: file.id,
    resource_id: file.resource_id ?? file.id,
    name: file.name,
    storage_session_id: file.storage_session_id ?? execSessionId,
    kind: file.kind ?? 'user',
  };
}

/** Pull `name: hash` pairs out of `sha256sum` output lines. */
export function parseSha256sum(stdout) {
  const sums = {};
  for (const line of String(stdout).split('\n')) {
    const match = /^([0-9a-f]{64})\s+\*?(.+)$/.exec(line.trim());
    if (match) {
      sums[match[2].replace(/^\.\//, '').replace(/^\/mnt\/data\//, '')] = match[1];
    }
  }
  return sums;
}

/** The stdout part of a tool's formatted content. */
export function toolStdout(content) {
  const text = String(content);
  const match = /^stdout:\n([\s\S]*?)(?:\nstderr:\n|\n\nGenerated files:|$)/.exec(text);
  return match ? match[1] : '';
}
