-- meshward forward-auth for HAProxy 2.6+: an `http-request` action that asks
-- the PDP (GET /auth/nginx) about the request before it goes anywhere.
--
--   http-request lua.meshward-auth <pdp host:port> <host> <timeout seconds>
--
-- The PDP is told the method, the request target exactly as received (not
-- decoded or normalised: the PDP canonicalises it, and the service gets the
-- same bytes) and the configured host, never one the client chose. The
-- client's headers go along for policies, except the ones this action sets.
-- 2xx: the PDP's X-Meshward-* headers are set on the request. Any other
-- answer goes back to the client as the PDP gave it; no answer in time, or
-- any error here, is a 503: fail closed.
--
-- The request is plain HTTP/1.1 over core.tcp(), whose timeout covers the
-- connect and every read (HAProxy 2.6's httpclient takes no timeout).

local SET_HERE = {
  ["x-original-method"] = true, ["x-original-uri"] = true, ["x-original-host"] = true,
  ["x-forwarded-host"] = true, ["x-forwarded-uri"] = true, ["x-forwarded-method"] = true,
  ["host"] = true, ["content-length"] = true, ["transfer-encoding"] = true,
  ["connection"] = true, ["expect"] = true, ["upgrade"] = true, ["te"] = true,
}
local PASS_BACK = { "content-type", "www-authenticate", "x-meshward-decision-id" }
local MAX_BODY = 65536

-- The request's headers: HAProxy gives each name's values indexed from 0.
local function request_headers(txn)
  local lines = {}
  for name, list in pairs(txn.http:req_get_headers()) do
    if not SET_HERE[name] then
      local i = 0
      while list[i] ~= nil do
        lines[#lines + 1] = name .. ": " .. list[i]
        i = i + 1
      end
    end
  end
  return lines
end

-- GET path from addr ("host:port"); nil on any failure.
local function get(addr, path, lines, timeout)
  local host, port = addr:match("^(.+):(%d+)$")
  local sock = core.tcp()
  sock:settimeout(timeout)
  if not sock:connect(host, tonumber(port)) then
    sock:close()
    return nil
  end
  lines[#lines + 1] = "connection: close"
  sock:send("GET " .. path .. " HTTP/1.1\r\n" .. table.concat(lines, "\r\n") .. "\r\n\r\n")
  local first = sock:receive("*l")
  local status = first and tonumber(first:match("^HTTP/1%.[01] (%d%d%d)"))
  if status == nil then
    sock:close()
    return nil
  end
  local headers = {}
  while true do
    local line = sock:receive("*l")
    if line == nil then
      sock:close()
      return nil
    end
    if line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then
      name = name:lower()
      headers[name] = headers[name] or {}
      table.insert(headers[name], value)
    end
  end
  local length = tonumber((headers["content-length"] or {})[1] or "0") or 0
  local body = ""
  if length > 0 then body = sock:receive(math.min(length, MAX_BODY)) or "" end
  sock:close()
  return { status = status, headers = headers, body = body }
end

local function ask(txn, pdp, host, timeout)
  local lines = request_headers(txn)
  lines[#lines + 1] = "host: " .. host
  lines[#lines + 1] = "x-original-host: " .. host
  lines[#lines + 1] = "x-original-method: " .. txn.sf:method()
  lines[#lines + 1] = "x-original-uri: " .. txn.sf:pathq()
  return get(pdp, "/auth/nginx", lines, tonumber(timeout))
end

local function refuse(txn, status, headers, body)
  txn:done(txn:reply({ status = status, headers = headers, body = body }))
end

core.register_action("meshward-auth", { "http-req" }, function(txn, pdp, host, timeout)
  local ok, res = pcall(ask, txn, pdp, host, timeout)
  if not ok or res == nil then
    refuse(txn, 503, { ["content-type"] = { "application/json" } },
      '{"error":"authorization unavailable"}\n')
    return
  end
  if res.status >= 200 and res.status < 300 then
    for _, name in ipairs({ "x-meshward-principal", "x-meshward-decision-id" }) do
      local got = res.headers[name]
      if got ~= nil and #got == 1 then txn.http:req_set_header(name, got[1]) end
    end
    return
  end
  local back = {}
  for _, name in ipairs(PASS_BACK) do
    if res.headers[name] ~= nil then back[name] = res.headers[name] end
  end
  refuse(txn, res.status, back, res.body)
end, 3)
