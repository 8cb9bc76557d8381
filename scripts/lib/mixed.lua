-- wrk script for scripts/soak: cycles through a mix of routes, mostly small
-- responses, with the 64 KiB asset every 20th and the 1.5 MiB asset every
-- 200th request. With SOAK_CLOSE=1 in the environment every request asks for
-- Connection: close (a new TCP connection per request). With SOAK_PIPELINE=N
-- (default 1) each write carries N requests back to back (HTTP/1.1
-- pipelining): under TCG the guest's cost per request is mostly per segment,
-- so this is what lets a few connections carry the soak's millions.
-- Public routes only: the admin endpoints are on their own port (or, with
-- admin=public, beside these, where soak's own probes read them).
local small = { "/health", "/", "/style.css", "/docs/", "/bench/4k.html", "/logo.svg" }
local close = os.getenv("SOAK_CLOSE") == "1"
local depth = math.max(1, tonumber(os.getenv("SOAK_PIPELINE") or "1") or 1)
local counter = 0

local function one()
  counter = counter + 1
  local path
  if counter % 200 == 0 then
    path = "/large.bin"
  elseif counter % 20 == 0 then
    path = "/bench/64k.bin"
  else
    path = small[(counter % #small) + 1]
  end
  if close then
    return wrk.format("GET", path, { ["Connection"] = "close" })
  end
  return wrk.format("GET", path)
end

request = function()
  if depth == 1 then
    return one()
  end
  local batch = {}
  for i = 1, depth do
    batch[i] = one()
  end
  return table.concat(batch)
end
