-- wrk script for scripts/bench-api.sh: POSTs new orders to /v1/orders (or events to
-- /v1/events) for the whole run, one per request or BATCH per request, with ids unique across
-- threads and runs, and counts the 2xx answers so that they can be compared with the records
-- stored afterwards. Arguments: TOKEN BATCH CUSTOMERS RUN KIND (orders or events)
local threads = {}
local next_id = 1

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  token = args[1]
  batch = tonumber(args[2])
  customers = tonumber(args[3])
  run = args[4]
  kind = args[5] or "orders"
  sent, ok = 0, 0
  post_headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }
end

local function order(n)
  if kind == "events" then
    return string.format(
      '{"id":"%s-t%d-%d","customer":"c%d","name":"cart_added","at":"2026-11-01T10:00:00Z","properties":{"skus":["LOTION"],"value":3980}}',
      run, tid, n, (tid * 7919 + n) % customers + 1)
  end
  return string.format(
    '{"order_id":"%s-t%d-%d","customer_id":"c%d","placed_at":"2026-11-01T10:00:00Z","currency":"JPY","items":[{"sku":"LOTION","quantity":1,"unit_price":3980}]}',
    run, tid, n, (tid * 7919 + n) % customers + 1)
end

function request()
  local parts = {}
  for i = 1, batch do
    sent = sent + 1
    parts[i] = order(sent)
  end
  local body = parts[1]
  if batch > 1 then
    body = '{"' .. kind .. '":[' .. table.concat(parts, ",") .. ']}'
  end
  return wrk.format("POST", "/v1/" .. kind, post_headers, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + batch
  end
end

function done(summary, latency, requests)
  local total_ok = 0
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
  end
  io.write(string.format("records answered 2xx: %d\n", total_ok))
end
