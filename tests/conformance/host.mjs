// LibreChat's host-side Code API calls, replicated with the same libraries (axios and
// form-data), URLs, headers, form fields and timeouts as LibreChat's
// `api/server/services/Files/Code/crud.js` and `process.js` (current generation) and
// their `entity_id` / `X-API-Key` predecessors (legacy generation).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import axios from 'axios';
import FormData from 'form-data';

import { LIBRECHAT_UA } from './lib.mjs';

const MAX_FILE_SIZE = 150 * 1024 * 1024;
const PROFILE_HEADER = 'X-CodeAPI-Expected-Profile';

const http = axios.create();

/** Write `bytes` to a temporary file and open it as LibreChat does (a file stream). */
export function fileStream(name, bytes) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rce-conf-'));
  const file = path.join(dir, path.basename(name));
  fs.writeFileSync(file, bytes);
  return fs.createReadStream(file);
}

/** `getCodeEnvFileOptions` from LibreChat's `packages/api/src/files/code/form.ts`. */
function codeEnvFileOptions(filename) {
  const base = path.posix.basename(filename);
  return base === filename ? { filename } : { filename: base, filepath: filename };
}

function identityQuery({ kind, id, version }) {
  const params = new URLSearchParams({ kind, id });
  if (version != null) {
    params.set('version', String(version));
  }
  return `?${params.toString()}`;
}

/** Current `uploadCodeEnvFile`: `kind`, `id`, `version?`, then `file`. */
export async function uploadCodeEnvFile({
  baseUrl,
  userId,
  authHeaders,
  filename,
  bytes,
  kind = 'user',
  id = userId,
  version,
  executionProfile,
}) {
  const form = new FormData();
  form.append('kind', kind);
  form.append('id', id);
  if (version != null) {
    form.append('version', String(version));
  }
  form.append('file', fileStream(filename, bytes), codeEnvFileOptions(filename));
  const response = await http.post(`${baseUrl}/upload`, form, {
    headers: {
      ...form.getHeaders(),
      'Content-Type': 'multipart/form-data',
      'User-Agent': LIBRECHAT_UA,
      'User-Id': userId,
      ...authHeaders,
      ...(executionProfile ? { [PROFILE_HEADER]: executionProfile } : {}),
    },
    timeout: 120000,
    maxContentLength: MAX_FILE_SIZE,
    maxBodyLength: MAX_FILE_SIZE,
  });
  const result = response.data;
  if (result.message !== 'success') {
    throw new Error(`Error uploading file: ${result.message}`);
  }
  return {
    storage_session_id: result.storage_session_id,
    file_id: result.files[0].fileId,
    raw: result,
  };
}

/** Legacy `uploadCodeEnvFile`: optional `entity_id`, then `file`; `X-API-Key`. */
export async function legacyUploadCodeEnvFile({
  baseUrl,
  userId,
  apiKey,
  filename,
  bytes,
  entity_id = '',
}) {
  const form = new FormData();
  if (entity_id.length > 0) {
    form.append('entity_id', entity_id);
  }
  form.append('file', fileStream(filename, bytes), filename);
  const response = await http.post(`${baseUrl}/upload`, form, {
    headers: {
      ...form.getHeaders(),
      'Content-Type': 'multipart/form-data',
      'User-Agent': LIBRECHAT_UA,
      'User-Id': userId,
      'X-API-Key': apiKey,
    },
    maxContentLength: MAX_FILE_SIZE,
    maxBodyLength: MAX_FILE_SIZE,
  });
  const result = response.data;
  if (result.message !== 'success') {
    throw new Error(`Error uploading file: ${result.message}`);
  }
  const fileIdentifier = `${result.session_id}/${result.files[0].fileId}`;
  return {
    fileIdentifier: entity_id ? `${fileIdentifier}?entity_id=${entity_id}` : fileIdentifier,
    session_id: result.session_id,
    file_id: result.files[0].fileId,
    raw: result,
  };
}

/** `batchUploadCodeEnvFiles`: identity fields, optional `read_only`, N `file` parts. */
export async function batchUploadCodeEnvFiles({
  baseUrl,
  userId,
  authHeaders,
  files,
  kind = 'user',
  id = userId,
  version,
  read_only = false,
}) {
  const form = new FormData();
  form.append('kind', kind);
  form.append('id', id);
  if (version != null) {
    form.append('version', String(version));
  }
  if (read_only) {
    form.append('read_only', 'true');
  }
  for (const file of files) {
    form.append('file', fileStream(file.filename, file.bytes), codeEnvFileOptions(file.filename));
  }
  const response = await http.post(`${baseUrl}/upload/batch`, form, {
    headers: {
      ...form.getHeaders(),
      'Content-Type': 'multipart/form-data',
      'User-Agent': LIBRECHAT_UA,
      'User-Id': userId,
      ...authHeaders,
    },
    timeout: 120000,
    maxContentLength: MAX_FILE_SIZE,
    maxBodyLength: MAX_FILE_SIZE,
  });
  const result = response.data;
  if (
    !result ||
    typeof result !== 'object' ||
    !result.storage_session_id ||
    !Array.isArray(result.files)
  ) {
    throw new Error(`Unexpected batch upload response: ${JSON.stringify(result).slice(0, 200)}`);
  }
  if (result.message === 'error') {
    throw new Error('All files in batch upload failed');
  }
  const successFiles = result.files
    .filter((f) => f.status === 'success' && f.fileId)
    .map((f) => ({ fileId: f.fileId, filename: f.filename }));
  return { storage_session_id: result.storage_session_id, files: successFiles, raw: result };
}

/**
 * Current `getSessionInfo`: `GET /sessions/{sid}/objects/{fid}?kind&id`, 5 s.
 * LibreChat swallows every error (cache miss); `raw` keeps the error for the checks.
 */
export async function getSessionInfo({ baseUrl, ref, authHeaders, executionProfile }) {
  const query = identityQuery({ kind: ref.kind, id: ref.id, version: ref.version });
  const response = await http({
    method: 'get',
    url: `${baseUrl}/sessions/${ref.storage_session_id}/objects/${ref.file_id}${query}`,
    headers: {
      'User-Agent': LIBRECHAT_UA,
      ...authHeaders,
      ...(executionProfile ? { [PROFILE_HEADER]: executionProfile } : {}),
    },
    timeout: 5000,
  });
  return response.data?.lastModified;
}

/** LibreChat's `checkIfActive`: fresh when `lastModified` is less than 23 hours old. */
export function checkIfActive(dateString) {
  const hoursPassed = (new Date() - new Date(dateString)) / (1000 * 60 * 60);
  return hoursPassed < 23;
}

/**
 * Legacy `getSessionInfo`: `GET /files/{sid}?detail=summary[&entity_id]` with
 * `X-API-Key`; the entry whose `name` starts with `{sid}/{fileId}` gives `lastModified`.
 */
export async function legacyGetSessionInfo({ baseUrl, fileIdentifier, apiKey }) {
  const [filePath, queryString] = fileIdentifier.split('?');
  const session_id = filePath.split('/')[0];
  const params = { detail: 'summary' };
  if (queryString) {
    const entityId = new URLSearchParams(queryString).get('entity_id');
    if (entityId) {
      params.entity_id = entityId;
    }
  }
  const response = await http({
    method: 'get',
    url: `${baseUrl}/files/${session_id}`,
    params,
    headers: { 'User-Agent': LIBRECHAT_UA, 'X-API-Key': apiKey },
    timeout: 5000,
  });
  const fileMatch = response.data.find((file) => file.name.startsWith(filePath));
  return fileMatch?.lastModified;
}

/**
 * The provision service's `checkCodeEnvFileAlive` / `checkSessionsAlive`:
 * `GET /files/{sid}?detail=summary`, alive when an entry's `fileId` matches.
 */
export async function checkCodeEnvFileAlive({ baseUrl, ref, headers }) {
  const response = await http({
    method: 'get',
    url: `${baseUrl}/files/${ref.storage_session_id}`,
    params: { detail: 'summary' },
    headers: { 'User-Agent': LIBRECHAT_UA, ...headers },
    timeout: 5000,
  });
  return Boolean(response.data?.some((f) => f.fileId === ref.file_id));
}

/** `downloadCodeOutputBuffer`: `GET /download/{sid}/{fid}?kind=user&id=`, arraybuffer. */
export async function downloadCodeOutputBuffer({
  baseUrl,
  userId,
  session_id,
  id,
  authHeaders,
  executionProfile = 'default',
}) {
  const response = await http({
    method: 'get',
    url: `${baseUrl}/download/${session_id}/${id}${identityQuery({ kind: 'user', id: userId })}`,
    responseType: 'arraybuffer',
    headers: {
      'User-Agent': LIBRECHAT_UA,
      ...authHeaders,
      [PROFILE_HEADER]: executionProfile,
    },
    timeout: 15000,
  });
  return Buffer.from(response.data, 'binary');
}

/** Legacy `getCodeOutputDownloadStream`: `GET /download/{sid}/{fid}`, `X-API-Key`. */
export async function legacyDownload({ baseUrl, fileIdentifier, apiKey }) {
  const response = await http({
    method: 'get',
    url: `${baseUrl}/download/${fileIdentifier}`,
    responseType: 'arraybuffer',
    headers: { 'User-Agent': LIBRECHAT_UA, 'X-API-Key': apiKey },
    timeout: 15000,
  });
  return Buffer.from(response.data, 'binary');
}

/** `deleteCodeEnvFile`: `DELETE /files/{sid}/{fid}?kind&id`; 404 is tolerated. */
export async function deleteCodeEnvFile({ baseUrl, ref, authHeaders, tolerate404 = true }) {
  const query = identityQuery({ kind: ref.kind, id: ref.id, version: ref.version });
  try {
    const response = await http({
      method: 'delete',
      url: `${baseUrl}/files/${ref.storage_session_id}/${ref.file_id}${query}`,
      headers: {
        'User-Agent': LIBRECHAT_UA,
        ...authHeaders,
        [PROFILE_HEADER]: 'default',
      },
      timeout: 15000,
    });
    return response.status;
  } catch (error) {
    if (tolerate404 && error.response?.status === 404) {
      return 404;
    }
    throw error;
  }
}

function execHeaders(authHeaders, executionProfile) {
  return {
    'Content-Type': 'application/json',
    'User-Agent': LIBRECHAT_UA,
    ...authHeaders,
    ...(executionProfile ? { [PROFILE_HEADER]: executionProfile } : {}),
  };
}

/** `readSandboxFile`: `POST /exec {lang:'bash', code:"cat '<path>'", session_id?, files?}`. */
export async function readSandboxFile({
  baseUrl,
  file_path,
  session_id,
  files,
  authHeaders,
  executionProfile = 'default',
}) {
  const safePath = `'${file_path.replace(/'/g, `'\\''`)}'`;
  const postData = { lang: 'bash', code: `cat ${safePath}` };
  if (session_id) {
    postData.session_id = session_id;
  }
  if (files && files.length > 0) {
    postData.files = files;
  }
  const response = await http({
    method: 'post',
    url: `${baseUrl}/exec`,
    data: postData,
    headers: execHeaders(authHeaders, executionProfile),
    timeout: 15000,
  });
  const result = response?.data ?? {};
  if (result.stderr && (result.stdout == null || result.stdout === '')) {
    throw new Error(String(result.stderr).trim());
  }
  if (result.stdout == null) {
    return null;
  }
  return { content: String(result.stdout) };
}

/** `writeSandboxFile`: a `python3 - <<'PY'` heredoc writer through `POST /exec`. */
export async function writeSandboxFile({
  baseUrl,
  file_path,
  content,
  session_id,
  files,
  authHeaders,
  executionProfile = 'default',
}) {
  const payload = Buffer.from(
    JSON.stringify({ file_path, content_b64: Buffer.from(content, 'utf8').toString('base64') }),
    'utf8',
  ).toString('base64');
  const code = [
    "python3 - <<'PY'",
    'import base64, json, os',
    `payload = ${JSON.stringify(payload)}`,
    "data = json.loads(base64.b64decode(payload).decode('utf-8'))",
    "path = data['file_path']",
    "content = base64.b64decode(data['content_b64'])",
    'parent = os.path.dirname(path)',
    'if parent:',
    '    os.makedirs(parent, exist_ok=True)',
    "with open(path, 'wb') as f:",
    '    f.write(content)',
    'print(f"WROTE {len(content)} bytes to {path}")',
    'PY',
  ].join('\n');
  const postData = { lang: 'bash', code };
  if (session_id) {
    postData.session_id = session_id;
  }
  if (files && files.length > 0) {
    postData.files = files;
  }
  const response = await http({
    method: 'post',
    url: `${baseUrl}/exec`,
    data: postData,
    headers: execHeaders(authHeaders, executionProfile),
    timeout: 15000,
  });
  const result = response?.data ?? {};
  if (result.stderr && (result.stdout == null || result.stdout === '')) {
    throw new Error(String(result.stderr).trim());
  }
  return {
    stdout: result.stdout == null ? undefined : String(result.stdout),
    session_id: result.session_id,
    files: result.files,
  };
}

/** HTTP status of an axios error (or undefined for a transport failure). */
export function statusOf(error) {
  return error?.response?.status;
}

/** Run `fn`, which must fail with an HTTP status in `allowed`; returns that status. */
export async function expectHttpError(fn, allowed) {
  let value;
  try {
    value = await fn();
  } catch (error) {
    const status = statusOf(error);
    if (status === undefined) {
      throw new Error(`expected HTTP ${allowed.join('/')}, got a transport error: ${error.message}`);
    }
    if (!allowed.includes(status)) {
      const body = error.response?.data;
      const text = Buffer.isBuffer(body) ? body.toString('utf8') : JSON.stringify(body);
      throw new Error(`expected HTTP ${allowed.join('/')}, got ${status}: ${String(text).slice(0, 300)}`);
    }
    return status;
  }
  throw new Error(`expected HTTP ${allowed.join('/')}, the call succeeded: ${JSON.stringify(value)?.slice(0, 300)}`);
}
