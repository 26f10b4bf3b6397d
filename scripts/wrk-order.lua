-- wrk script: POST /api/v1/orders for one hot SKU, a new user per request.
-- Usage: SKU=hot-1 wrk -t2 -c64 -d20s -s scripts/wrk-order.lua http://127.0.0.1:8080
local sku = os.getenv("SKU") or "hot-1"
local n = 0
local thread_id = 0

setup = function(thread)
	thread_id = thread_id + 1
	thread:set("tid", thread_id)
end

request = function()
	n = n + 1
	local body = string.format('{"user_id":"wrk-%d-%d-%d","items":[{"sku":"%s","quantity":1}]}',
		tid or 0, n, math.random(1, 1000000000), sku)
	return wrk.format("POST", "/api/v1/orders", { ["Content-Type"] = "application/json" }, body)
end

done = function(summary, latency, requests)
	io.write(string.format("requests %d, %.0f/s, p50 %.1f ms, p99 %.1f ms, non-2xx %d\n",
		summary.requests, summary.requests / (summary.duration / 1e6),
		latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
