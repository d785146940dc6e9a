-- Policy of the rce Docker socket proxy (HAProxy 2.6+, Lua 5.3).
--
-- Only the Engine API calls the rce runner makes are allowed; every other call is
-- answered 403 with {"message": "..."} and never reaches the engine. Container
-- names are the policy's unit of trust: the runner names every sandbox
-- "rce-sbx-<hex>" and addresses it by that name, so a path naming any other
-- container, or a bare id, is refused.
--
-- The create body is decoded here and checked against an allowlist. The Engine
-- decodes JSON with Go's encoding/json, which matches keys case-insensitively and
-- lets the last duplicate win; it also reads host-config fields placed at the top
-- level of the body. So this decoder folds key case, refuses duplicate keys,
-- refuses non-ASCII keys, and refuses every key it does not know. lua-cjson is not
-- used because it cannot see duplicate keys.
--
-- Settings (environment, read once at start):
--   RCE_PROXY_IMAGES         comma-separated images a sandbox may use
--   RCE_PROXY_RUNTIMES       comma-separated OCI runtimes allowed (default runc). A create
--                            that names no runtime gets the engine's default, runc, so
--                            it is allowed only when runc is listed: with
--                            RCE_PROXY_RUNTIMES=runsc, every sandbox must say runsc.
--   RCE_PROXY_ALLOW_NETWORK  true: bridge networking is allowed besides "none"
--   RCE_PROXY_NETWORKS       comma-separated user-defined networks allowed besides
--                            "none" (rce-allowlist, rce-open: RCE_NETWORK_MODE)
--   RCE_PROXY_ALLOW_GPU      true: a DeviceRequest for the gpu capability is allowed

local MIN_API_MINOR = 24 -- older API versions accept a HostConfig on /start
-- Bounds of a JSON body (the runner's largest is a create of about 3 KiB).
local MAX_BODY_BYTES = 32768
local MAX_DEPTH = 16
local MAX_VALUES = 4096
local MAX_NUMBER_CHARS = 32
local SANDBOX_LABEL, SANDBOX_LABEL_VALUE = "org.rce.service", "rce"
local NAME = "rce%-sbx%-[%w_%-]+"
local EXEC_ID = "%x+"

-- ---------------------------------------------------------------------------
-- settings

local function split_set(value)
  local set = {}
  for item in string.gmatch(value or "", "[^,%s]+") do
    set[item] = true
  end
  return set
end

local function truthy(value)
  value = string.lower(value or "")
  return value == "1" or value == "true" or value == "yes" or value == "on"
end

local CONF = {
  images = split_set(os.getenv("RCE_PROXY_IMAGES") or "custom-rce-kernel:latest"),
  runtimes = split_set(os.getenv("RCE_PROXY_RUNTIMES") or "runc"),
  allow_network = truthy(os.getenv("RCE_PROXY_ALLOW_NETWORK")),
  networks = split_set(os.getenv("RCE_PROXY_NETWORKS") or ""),
  allow_gpu = truthy(os.getenv("RCE_PROXY_ALLOW_GPU")),
}

-- ---------------------------------------------------------------------------
-- a strict JSON decoder
--
-- Objects decode to {tag = "object", entries = {{key, value}, ...}}, arrays to
-- {tag = "array", n = N, ...}, null to NULL. Errors are raised with error().
--
-- Every loop consumes at least one byte per turn, and the work and memory are
-- bounded by the input: a body is at most MAX_BODY_BYTES, holds at most MAX_VALUES
-- values nested at most MAX_DEPTH deep, and numbers are at most MAX_NUMBER_CHARS
-- long. The grammar is RFC 8259's: raw bytes 0x00-0x1F are refused inside strings
-- (0x7F and other bytes are ordinary characters, as for Go's encoding/json), the
-- body must be valid UTF-8 (no surrogates, no overlong forms), numbers follow the
-- JSON number syntax.

local NULL = setmetatable({}, { __tostring = function() return "null" end })
local OBJECT, ARRAY = "object", "array"

local SIMPLE_ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f",
                         n = "\n", r = "\r", t = "\t" }
-- The bytes that end a run of plain string characters: quote, backslash, and the
-- control bytes 0x00-0x1F (not %c, which also matches 0x7F).
local STRING_STOP = "[\"\\\0-\31]"

local function utf8_char(code)
  if code >= 0xD800 and code <= 0xDFFF then
    code = 0xFFFD -- a lone surrogate, as Go decodes it
  end
  return utf8.char(code)
end

-- True when s is valid UTF-8 with no encoded surrogate (utf8.len of Lua 5.3 already
-- refuses overlong forms and code points past U+10FFFF).
local function valid_utf8(s)
  if not string.find(s, "[\128-\255]") then return true end
  return utf8.len(s) ~= nil and not string.find(s, "\237[\160-\191]")
end

local decode_value

local function skip_ws(s, i)
  local _, e = string.find(s, "^[ \t\r\n]*", i)
  return e + 1
end

local function decode_string(s, i)
  -- s:sub(i, i) == '"'
  local parts, pos = {}, i + 1
  while true do
    local c = string.sub(s, pos, pos)
    if c == "" then
      error("unterminated string")
    elseif c == '"' then
      return table.concat(parts), pos + 1
    elseif c == "\\" then
      local esc = string.sub(s, pos + 1, pos + 1)
      if SIMPLE_ESCAPES[esc] then
        parts[#parts + 1] = SIMPLE_ESCAPES[esc]
        pos = pos + 2
      elseif esc == "u" then
        local hex = string.match(s, "^%x%x%x%x", pos + 2)
        if not hex then error("bad \\u escape") end
        local code = tonumber(hex, 16)
        pos = pos + 6
        if code >= 0xD800 and code <= 0xDBFF then
          local low = string.match(s, "^\\u(%x%x%x%x)", pos)
          local lcode = low and tonumber(low, 16)
          if lcode and lcode >= 0xDC00 and lcode <= 0xDFFF then
            code = 0x10000 + (code - 0xD800) * 0x400 + (lcode - 0xDC00)
            pos = pos + 6
          end
        end
        parts[#parts + 1] = utf8_char(code)
      else
        error("bad escape")
      end
    elseif string.byte(c) < 0x20 then
      error("control character in string")
    else
      -- a run of plain characters up to the next stop byte (never empty: c is plain)
      local e = string.find(s, STRING_STOP, pos)
      if not e then error("unterminated string") end
      if e <= pos then error("string scanner made no progress") end
      parts[#parts + 1] = string.sub(s, pos, e - 1)
      pos = e
    end
  end
end

local function decode_number(s, i)
  -- -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
  local e = i
  if string.sub(s, e, e) == "-" then e = e + 1 end
  local int = string.match(s, "^%d+", e)
  if not int or (#int > 1 and string.sub(int, 1, 1) == "0") then error("bad number") end
  e = e + #int
  local frac = string.match(s, "^%.%d+", e)
  if frac then e = e + #frac elseif string.sub(s, e, e) == "." then error("bad number") end
  local exp = string.match(s, "^[eE][-+]?%d+", e)
  if exp then e = e + #exp elseif string.find(s, "^[eE]", e) then error("bad number") end
  if e - i > MAX_NUMBER_CHARS then error("number too long") end
  local value = tonumber(string.sub(s, i, e - 1))
  if not value then error("bad number") end
  return value, e
end

local function decode_object(s, i, state)
  local obj = { tag = OBJECT, entries = {} }
  i = skip_ws(s, i + 1)
  if string.sub(s, i, i) == "}" then return obj, i + 1 end
  while true do
    if string.sub(s, i, i) ~= '"' then error("object key expected") end
    local key, value
    key, i = decode_string(s, i)
    i = skip_ws(s, i)
    if string.sub(s, i, i) ~= ":" then error("':' expected") end
    value, i = decode_value(s, skip_ws(s, i + 1), state)
    obj.entries[#obj.entries + 1] = { key, value }
    i = skip_ws(s, i)
    local c = string.sub(s, i, i)
    if c == "}" then return obj, i + 1 end
    if c ~= "," then error("',' or '}' expected") end
    i = skip_ws(s, i + 1)
  end
end

local function decode_array(s, i, state)
  local arr = { tag = ARRAY, n = 0 }
  i = skip_ws(s, i + 1)
  if string.sub(s, i, i) == "]" then return arr, i + 1 end
  while true do
    local value
    value, i = decode_value(s, i, state)
    arr.n = arr.n + 1
    arr[arr.n] = value
    i = skip_ws(s, i)
    local c = string.sub(s, i, i)
    if c == "]" then return arr, i + 1 end
    if c ~= "," then error("',' or ']' expected") end
    i = skip_ws(s, i + 1)
  end
end

decode_value = function(s, i, state)
  state.values = state.values + 1
  if state.values > MAX_VALUES then error("too many values") end
  i = skip_ws(s, i)
  local c = string.sub(s, i, i)
  if c == "{" or c == "[" then
    state.depth = state.depth + 1
    if state.depth > MAX_DEPTH then error("nested too deeply") end
    local value
    if c == "{" then value, i = decode_object(s, i, state) else value, i = decode_array(s, i, state) end
    state.depth = state.depth - 1
    return value, i
  end
  if c == '"' then return decode_string(s, i) end
  if string.sub(s, i, i + 3) == "true" then return true, i + 4 end
  if string.sub(s, i, i + 4) == "false" then return false, i + 5 end
  if string.sub(s, i, i + 3) == "null" then return NULL, i + 4 end
  if c == "-" or string.find(c, "^%d$") then return decode_number(s, i) end
  error("unexpected character")
end

local function decode_json(s)
  if #s > MAX_BODY_BYTES then return nil, "body larger than " .. MAX_BODY_BYTES .. " bytes" end
  if not valid_utf8(s) then return nil, "body is not valid UTF-8" end
  local ok, value, i = pcall(decode_value, s, 1, { depth = 0, values = 0 })
  if not ok then return nil, (string.gsub(tostring(value), "^.-:%d+: ", "")) end
  if skip_ws(s, i) <= #s then return nil, "data after the JSON value" end
  return value
end

-- ---------------------------------------------------------------------------
-- value helpers; every check raises a Refusal with error({refusal = text})

local function refuse(text)
  error({ refusal = text }, 0)
end

local function is_object(v) return type(v) == "table" and v.tag == OBJECT end
local function is_array(v) return type(v) == "table" and v.tag == ARRAY end

local function is_empty(v)
  if v == nil or v == NULL or v == false or v == "" or v == 0 then return true end
  if is_object(v) then return #v.entries == 0 end
  if is_array(v) then return v.n == 0 end
  return false
end

-- A Go struct's fields: keys folded to lower case, duplicates and non-ASCII refused.
local function fields(obj, where)
  if obj == nil or obj == NULL then return {} end
  if not is_object(obj) then refuse(where .. " must be an object") end
  local out = {}
  for _, entry in ipairs(obj.entries) do
    local key = entry[1]
    if string.find(key, "[^%w_]") then refuse(where .. ": key " .. key .. " is not allowed") end
    local folded = string.lower(key)
    if out[folded] ~= nil then refuse(where .. ": duplicate key " .. key) end
    out[folded] = entry[2]
  end
  return out
end

-- A Go map: exact keys, duplicates refused.
local function map(obj, where)
  if obj == nil or obj == NULL then return {} end
  if not is_object(obj) then refuse(where .. " must be an object") end
  local out = {}
  for _, entry in ipairs(obj.entries) do
    if out[entry[1]] ~= nil then refuse(where .. ": duplicate key " .. entry[1]) end
    out[entry[1]] = entry[2]
  end
  return out
end

local function strings(v, where)
  if v == nil or v == NULL then return {} end
  if not is_array(v) then refuse(where .. " must be a list") end
  local out = {}
  for k = 1, v.n do
    if type(v[k]) ~= "string" then refuse(where .. " must be a list of strings") end
    out[k] = v[k]
  end
  return out
end

local function as_string(v)
  if v == nil or v == NULL then return "" end
  return v
end

local function check_keys(struct, allowed, where)
  for key, value in pairs(struct) do
    local rule = allowed[key]
    local path = where == "" and key or (where .. "." .. key)
    if rule == nil then refuse(path .. " is not allowed") end
    if rule ~= true then rule(value, path) end
  end
end

local function must_be_empty(v, where)
  if not is_empty(v) then refuse(where .. " must be empty") end
end

local function must_be_null(v, where)
  if v ~= nil and v ~= NULL then refuse(where .. " must not be set") end
end

local function one_of(...)
  local set = {}
  for _, value in ipairs({ ... }) do set[value] = true end
  return function(v, where)
    if not set[as_string(v)] then refuse(where .. " " .. tostring(v) .. " is not allowed") end
  end
end

local function positive(v, where)
  if type(v) ~= "number" or v <= 0 then refuse(where .. " must be a positive number") end
end

local function non_negative(v, where)
  if v ~= nil and v ~= NULL and (type(v) ~= "number" or v < 0) then
    refuse(where .. " must not be negative")
  end
end

-- ---------------------------------------------------------------------------
-- the container-create policy

local function check_user(v, where, empty_ok)
  local user = as_string(v)
  if type(user) ~= "string" then refuse(where .. " must be a string") end
  if user == "" then
    if empty_ok then return end
    refuse(where .. " must name a non-root user")
  end
  local function ok_part(part)
    if string.match(part, "^[1-9]%d*$") then return #part <= 9 end
    return string.match(part, "^[a-z_][a-z0-9_-]*$") ~= nil and part ~= "root"
  end
  local uid, gid = string.match(user, "^([^:]*):?(.*)$")
  if not ok_part(uid) or (string.find(user, ":", 1, true) and not ok_part(gid)) then
    refuse(where .. " " .. user .. " is root or not a plain user[:group]")
  end
end

local function check_image(v, where)
  if not CONF.images[as_string(v)] then refuse(where .. " " .. tostring(v) .. " is not an allowed image") end
end

-- "" (no runtime named) means the engine's default runtime, runc.
local function check_runtime(v, where)
  local runtime = as_string(v)
  if runtime == "" then
    if not CONF.runtimes["runc"] then
      refuse(where .. " must name an allowed runtime (the engine default, runc, is not allowed)")
    end
  elseif not CONF.runtimes[runtime] then
    refuse(where .. " " .. tostring(runtime) .. " is not an allowed runtime")
  end
end

local function check_labels(v, where)
  local labels = map(v, where)
  if labels[SANDBOX_LABEL] ~= SANDBOX_LABEL_VALUE then
    refuse(where .. " must contain " .. SANDBOX_LABEL .. "=" .. SANDBOX_LABEL_VALUE)
  end
end

local NO_NEW_PRIVILEGES = { ["no-new-privileges"] = true, ["no-new-privileges:true"] = true,
                            ["no-new-privileges=true"] = true }

local function check_security_opt(v, where)
  local found = false
  for _, opt in ipairs(strings(v, where)) do
    if not NO_NEW_PRIVILEGES[opt] then refuse(where .. " " .. opt .. " is not allowed") end
    found = true
  end
  if not found then refuse(where .. " must contain no-new-privileges") end
end

local function check_cap_drop(v, where)
  for _, cap in ipairs(strings(v, where)) do
    if string.upper(cap) == "ALL" then return end
  end
  refuse(where .. " must contain ALL")
end

local function check_tmpfs(v, where)
  for path, options in pairs(map(v, where)) do
    if path ~= "/mnt/data" and path ~= "/tmp" and path ~= "/var/rce" then refuse(where .. " " .. path .. " is not allowed") end
    if type(options) ~= "string" then refuse(where .. " options must be a string") end
    for opt in string.gmatch(options, "[^,]+") do
      if opt == "suid" or opt == "dev" then refuse(where .. " option " .. opt .. " is not allowed") end
    end
  end
end

local function network_allowed(mode)
  if mode == "none" then return true end
  if CONF.networks[mode] then return true end
  return CONF.allow_network and (mode == "" or mode == "default" or mode == "bridge")
end

local function check_gpu_request(req, where)
  local f = fields(req, where)
  check_keys(f, { driver = one_of("", "nvidia"), count = true, deviceids = true,
                  capabilities = true, options = must_be_empty }, where)
  local caps = f.capabilities
  if not is_array(caps) or caps.n == 0 then refuse(where .. ".Capabilities must ask for gpu") end
  local known = { gpu = true, nvidia = true, compute = true, utility = true }
  for k = 1, caps.n do
    local has_gpu = false
    for _, cap in ipairs(strings(caps[k], where .. ".Capabilities")) do
      if not known[cap] then refuse(where .. ".Capabilities " .. cap .. " is not allowed") end
      has_gpu = has_gpu or cap == "gpu"
    end
    if not has_gpu then refuse(where .. ".Capabilities must ask for gpu") end
  end
end

local function check_device_requests(v, where)
  if is_empty(v) then return end
  if not CONF.allow_gpu then refuse(where .. " is not allowed (GPU is disabled on this proxy)") end
  if not is_array(v) then refuse(where .. " must be a list") end
  for k = 1, v.n do check_gpu_request(v[k], where) end
end

local ULIMITS = { nofile = true, nproc = true, fsize = true, core = true, stack = true,
                  cpu = true, as = true, data = true, memlock = true }

local function check_ulimits(v, where)
  if is_empty(v) then return end
  if not is_array(v) then refuse(where .. " must be a list") end
  for k = 1, v.n do
    local f = fields(v[k], where)
    check_keys(f, { name = true, soft = true, hard = true }, where)
    if not ULIMITS[as_string(f.name)] then refuse(where .. " " .. tostring(f.name) .. " is not allowed") end
  end
end

local function check_log_config(v, where)
  local f = fields(v, where)
  check_keys(f, { type = one_of("", "json-file", "local", "none"), config = true }, where)
end

local function check_restart(v, where)
  local f = fields(v, where)
  check_keys(f, { name = one_of("", "no"), maximumretrycount = must_be_empty }, where)
end

local function check_storage_opt(v, where)
  for key in pairs(map(v, where)) do
    if key ~= "size" then refuse(where .. " " .. key .. " is not allowed") end
  end
end

local HOST_CONFIG = {
  -- never: host resources, privileges and namespaces
  binds = must_be_empty, mounts = must_be_empty, volumesfrom = must_be_empty,
  volumedriver = must_be_empty, containeridfile = must_be_empty, links = must_be_empty,
  portbindings = must_be_empty, publishallports = must_be_empty, privileged = must_be_empty,
  capadd = must_be_empty, devices = must_be_empty, devicecgrouprules = must_be_empty,
  cgroupparent = must_be_empty, sysctls = must_be_empty, extrahosts = must_be_empty,
  groupadd = must_be_empty, oomkilldisable = must_be_empty, pidmode = must_be_empty,
  utsmode = must_be_empty, usernsmode = must_be_empty, cgroup = must_be_empty,
  blkioweightdevice = must_be_empty, blkiodevicereadbps = must_be_empty,
  blkiodevicewritebps = must_be_empty, blkiodevicereadiops = must_be_empty,
  blkiodevicewriteiops = must_be_empty, cpurealtimeperiod = must_be_empty,
  cpurealtimeruntime = must_be_empty,
  -- an empty list here would unmask /proc paths
  maskedpaths = must_be_null, readonlypaths = must_be_null,
  ipcmode = one_of("", "private", "none"), cgroupnsmode = one_of("", "private"),
  isolation = one_of("", "default"),
  -- required hardening
  readonlyrootfs = function(v, where) if v ~= true then refuse(where .. " must be true") end end,
  securityopt = check_security_opt, capdrop = check_cap_drop,
  memory = positive, pidslimit = positive,
  networkmode = true, -- checked with NetworkDisabled in check_network
  runtime = check_runtime, tmpfs = check_tmpfs, devicerequests = check_device_requests,
  logconfig = check_log_config, restartpolicy = check_restart, storageopt = check_storage_opt,
  oomscoreadj = non_negative,
  -- limits that only restrict the sandbox
  nanocpus = true, cpushares = true, cpuperiod = true, cpuquota = true, cpusetcpus = true,
  cpusetmems = true, cpucount = true, cpupercent = true, memoryswap = true,
  memoryreservation = true, memoryswappiness = true, kernelmemory = true,
  kernelmemorytcp = true, ulimits = check_ulimits, blkioweight = true, iomaximumiops = true,
  iomaximumbandwidth = true, shmsize = true, autoremove = true, init = true,
  consolesize = true, dns = true, dnsoptions = true, dnssearch = true,
}

-- NetworkDisabled=true leaves only the loopback device on the default network mode.
local function check_network(mode, disabled)
  if type(mode) ~= "string" then refuse("HostConfig.NetworkMode must be a string") end
  if network_allowed(mode) then return end
  if disabled and (mode == "" or mode == "default" or mode == "bridge") then return end
  refuse("HostConfig.NetworkMode " .. (mode == "" and "(default)" or mode) .. " is not allowed")
end

local function check_host_config(v, where)
  if not is_object(v) then refuse(where .. " is required") end
  local f = fields(v, where)
  check_keys(f, HOST_CONFIG, where)
  if f.readonlyrootfs == nil then refuse(where .. ".ReadonlyRootfs must be true") end
  if f.securityopt == nil then refuse(where .. ".SecurityOpt must contain no-new-privileges") end
  if f.capdrop == nil then refuse(where .. ".CapDrop must contain ALL") end
  if f.memory == nil then refuse(where .. ".Memory must be set") end
  if f.pidslimit == nil then refuse(where .. ".PidsLimit must be set") end
  return f
end

local function check_networking_config(v, where)
  local f = fields(v, where)
  check_keys(f, { endpointsconfig = true }, where)
  for name, endpoint in pairs(map(f.endpointsconfig, where .. ".EndpointsConfig")) do
    if not network_allowed(name) then refuse(where .. " network " .. name .. " is not allowed") end
    check_keys(fields(endpoint, where .. "." .. name), { aliases = true }, where .. "." .. name)
  end
end

local CONFIG = {
  hostname = true, domainname = true, attachstdin = true, attachstdout = true,
  attachstderr = true, tty = true, openstdin = true, stdinonce = true, env = true,
  cmd = true, entrypoint = true, shell = true, healthcheck = true, argsescaped = true,
  workingdir = true, networkdisabled = true, stopsignal = true, stoptimeout = true,
  exposedports = must_be_empty, volumes = must_be_empty, macaddress = must_be_empty,
  onbuild = must_be_empty,
  user = function(v, where) check_user(v, where, false) end,
  image = check_image, labels = check_labels, runtime = check_runtime,
  hostconfig = true, networkingconfig = check_networking_config,
}

local function check_create(body)
  local f = fields(body, "body")
  check_keys(f, CONFIG, "")
  if f.image == nil then refuse("Image is required") end
  if f.user == nil then refuse("User must name a non-root user") end
  if f.labels == nil then refuse("Labels must contain " .. SANDBOX_LABEL .. "=" .. SANDBOX_LABEL_VALUE) end
  local host = check_host_config(f.hostconfig, "HostConfig")
  check_network(as_string(host.networkmode), f.networkdisabled == true)
  -- A runtime left out (in both places the engine reads it) is the engine default.
  if host.runtime == nil and f.runtime == nil then check_runtime("", "HostConfig.Runtime") end
end

local EXEC_CONFIG = {
  attachstdin = true, attachstdout = true, attachstderr = true, detachkeys = true,
  tty = true, env = true, cmd = true, workingdir = true, consolesize = true, detach = true,
  -- the Docker SDK sends Container; the engine ignores it and uses the path
  container = true,
  privileged = must_be_empty,
  user = function(v, where) check_user(v, where, true) end,
}

local function check_exec_create(body)
  check_keys(fields(body, "body"), EXEC_CONFIG, "")
end

local function check_exec_start(body)
  check_keys(fields(body, "body"), { detach = true, tty = true, consolesize = true }, "")
end

-- ---------------------------------------------------------------------------
-- routing

local function header(txn, name)
  local values = txn.http:req_get_headers()[name]
  if not values then return nil, 0 end
  local count = 0
  for _ in pairs(values) do count = count + 1 end
  return values[0], count
end

local function has_body(txn)
  local length = header(txn, "content-length")
  local chunked = header(txn, "transfer-encoding")
  return chunked ~= nil or (length ~= nil and length ~= "0")
end

local function json_body(txn)
  local length, count = header(txn, "content-length")
  if header(txn, "transfer-encoding") or header(txn, "content-encoding") or count ~= 1 then
    refuse("a JSON body needs exactly one Content-Length and no transfer or content encoding")
  end
  if not string.match(length, "^%d+$") or #length > 9 then refuse("bad Content-Length") end
  if tonumber(length) > MAX_BODY_BYTES then
    refuse("request body too large for the policy check (limit " .. MAX_BODY_BYTES .. " bytes)")
  end
  -- HAProxy hands over at most one buffer: a shorter body than announced was cut.
  local body = txn.f:req_body() or ""
  if tostring(#body) ~= length then refuse("request body too large for the policy check") end
  local value, err = decode_json(body)
  if value == nil then refuse("request body is not valid JSON: " .. tostring(err)) end
  return value
end

local function check_create_query(query)
  local name = string.match(query, "^name=(" .. NAME .. ")$")
    or string.match(query, "^name=(" .. NAME .. ")&platform=[%w/._-]*$")
  if not name or #name > 128 then refuse("containers must be created with name=rce-sbx-<id>") end
end

-- A rename keeps a sandbox a sandbox: only rce-sbx-<id> to rce-sbx-<id> (a
-- programmatic run's container carries its request-id digest and expiry in its name).
local function check_rename_query(query)
  local name = string.match(query, "^name=(" .. NAME .. ")$")
  if not name or #name > 128 then refuse("containers may only be renamed to name=rce-sbx-<id>") end
end

-- Each route: method set, path pattern (version prefix removed), handler.
local ROUTES = {
  { { GET = true, HEAD = true }, "^/_ping$" },
  { { GET = true }, "^/version$" },
  { { GET = true }, "^/images/[%w._:/-]+/json$" },
  { { GET = true }, "^/containers/json$" },
  { { POST = true }, "^/containers/create$", function(txn, query)
      check_create_query(query)
      check_create(json_body(txn))
    end, true },
  { { POST = true }, "^/containers/" .. NAME .. "/attach$", "hijack" },
  { { POST = true }, "^/containers/" .. NAME .. "/start$" },
  { { POST = true }, "^/containers/" .. NAME .. "/wait$" },
  { { POST = true }, "^/containers/" .. NAME .. "/kill$" },
  { { POST = true }, "^/containers/" .. NAME .. "/rename$", function(_, query)
      check_rename_query(query)
    end },
  { { GET = true }, "^/containers/" .. NAME .. "/json$" },
  { { DELETE = true }, "^/containers/" .. NAME .. "$" },
  { { GET = true, HEAD = true }, "^/containers/" .. NAME .. "/archive$" },
  { { PUT = true }, "^/containers/" .. NAME .. "/archive$", nil, true },
  { { POST = true }, "^/containers/" .. NAME .. "/exec$", function(txn)
      check_exec_create(json_body(txn))
    end, true },
  { { POST = true }, "^/exec/" .. EXEC_ID .. "/start$", function(txn)
      if has_body(txn) then check_exec_start(json_body(txn)) end
      txn:set_var("txn.rce_hijack", 1)
    end, true },
  { { GET = true }, "^/exec/" .. EXEC_ID .. "/json$" },
}

local function strip_version(path)
  local major, minor, rest = string.match(path, "^/v(%d+)%.(%d+)(/.*)$")
  if not major then return path end
  if tonumber(major) ~= 1 or tonumber(minor) < MIN_API_MINOR then
    refuse("API version v" .. major .. "." .. minor .. " is not allowed (need v1." .. MIN_API_MINOR .. "+)")
  end
  return rest
end

local function check_request(txn)
  local method, path, query = txn.sf:method(), txn.sf:path() or "", txn.sf:query() or ""
  local url = txn.sf:url() or ""
  if string.sub(url, 1, 1) ~= "/" or string.find(path, "[^%w/._:-]")
     or string.find(path, "//", 1, true) or string.find(path, "/.", 1, true) then
    refuse("path is not allowed: " .. path)
  end
  path = strip_version(path)
  for _, route in ipairs(ROUTES) do
    local methods, pattern, handler, body_ok = route[1], route[2], route[3], route[4]
    if methods[method] and string.find(path, pattern) then
      if not body_ok and has_body(txn) then refuse(method .. " " .. path .. " takes no body") end
      if handler == "hijack" then
        txn:set_var("txn.rce_hijack", 1)
      elseif handler then
        handler(txn, query)
      end
      return
    end
  end
  refuse("endpoint not allowed by the rce socket proxy: " .. method .. " " .. path)
end

local function json_message(text)
  text = string.gsub(text, "[\128-\255]", "?")
  local escaped = string.gsub(text, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end)
  return '{"message":"' .. escaped .. '"}'
end

-- The action. haproxy.cfg lets a request through only when this sets
-- txn.rce_allow, which happens only after check_request ran to its end without a
-- refusal or an error. Anything else (a refusal, an error here, a Lua error or
-- timeout that ends the action early, a context that could not start for lack of
-- memory) leaves it unset, and the request is refused. txn.rce_deny only carries the
-- message of a refusal; recording it is best effort.
core.register_action("rce_policy", { "http-req" }, function(txn)
  local ok, err = pcall(check_request, txn)
  if ok then
    txn:set_var("txn.rce_allow", true)
    return
  end
  pcall(function()
    local text = type(err) == "table" and err.refusal or ("policy error: " .. tostring(err))
    txn:set_var("txn.rce_deny", json_message(text))
  end)
end, 0)
