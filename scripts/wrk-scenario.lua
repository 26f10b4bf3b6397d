-- wrk script: the named scenarios of `orderbench --scenario` (hot, catalogue,
-- carts, keys, sale) for a plain wrk run. The products must exist first
-- (docs/ORDERBENCH.md: PUT bench-0 .. bench-99); wrk does no setup or audit.
--
--   SCENARIO=sale wrk -t2 -c64 -d20s -s scripts/wrk-scenario.lua http://127.0.0.1:8080
--
-- SCENARIO sets the defaults below; these variables override them, as flags do
-- with orderbench --scenario:
--   SKUS         number of products SKU_PREFIX0 .. SKU_PREFIX<SKUS-1>
--   SKU_PREFIX   default bench-
--   ZIPF         Zipf exponent (> 1) for picking SKUs, P(k) ~ (k+1)^-ZIPF like
--                orderbench's; 0 is uniform
--   MULTI_SHARE  share (0..1) of orders that are carts of MULTI_ITEMS distinct SKUs
--   MULTI_ITEMS  items in a cart
--   KEYS         1: an Idempotency-Key on every order; 0: none
--   USERS        user pool size (0: a new user per order); user ids carry a
--                random run id (or RUN), so earlier runs' orders do not count
--                against the per-user limit
--   PAGE         1: GET the product page of the picked SKU instead of ordering
--                (scenario page: one SKU)
--   TICKETS      scenario poll: a file of waiting-room ticket ids, one a line;
--                each request polls a random one (GET /api/v1/queue/{ticket})
-- Scenario join joins the picked SKU's waiting room as a new user per request
-- (POST /api/v1/products/{sku}/queue).
-- It prints answers by status (409s split by error code) and the latency.

local scenarios = {
	hot       = { skus = 1,   zipf = 0,   multi_share = 0,   multi_items = 1, keys = 0, users = 0 },
	catalogue = { skus = 100, zipf = 1.1, multi_share = 0,   multi_items = 1, keys = 0, users = 0 },
	carts     = { skus = 100, zipf = 1.1, multi_share = 0.2, multi_items = 3, keys = 0, users = 0 },
	keys      = { skus = 100, zipf = 1.1, multi_share = 0.2, multi_items = 3, keys = 1, users = 0 },
	sale      = { skus = 100, zipf = 1.1, multi_share = 0.2, multi_items = 3, keys = 1, users = 10000 },
	page      = { skus = 1,   zipf = 0,   multi_share = 0,   multi_items = 1, keys = 0, users = 0, page = 1 },
	join      = { skus = 1,   zipf = 0,   multi_share = 0,   multi_items = 1, keys = 0, users = 0, join = 1 },
	poll      = { skus = 1,   zipf = 0,   multi_share = 0,   multi_items = 1, keys = 0, users = 0, poll = 1 },
}

-- fail stops wrk: an error() at load time only prints, and wrk would go on
-- sending GET / instead of orders.
local function fail(msg)
	io.stderr:write("wrk-scenario.lua: " .. msg .. "\n")
	os.exit(2)
end

local name = os.getenv("SCENARIO") or "hot"
local sc = scenarios[name]
if not sc then
	fail("unknown SCENARIO " .. name .. ": valid scenarios are hot, catalogue, carts, keys, sale, page, join, poll")
end

local function env_number(var, default)
	local v = os.getenv(var)
	if v == nil or v == "" then
		return default
	end
	local n = tonumber(v)
	if n == nil then
		fail(var .. "=" .. v .. " is not a number")
	end
	return n
end

local skus = env_number("SKUS", sc.skus)
local prefix = os.getenv("SKU_PREFIX") or "bench-"
local zipf = env_number("ZIPF", sc.zipf)
local multi_share = env_number("MULTI_SHARE", sc.multi_share)
local multi_items = math.min(env_number("MULTI_ITEMS", sc.multi_items), skus)
local keys = env_number("KEYS", sc.keys) ~= 0
local users = env_number("USERS", sc.users)
local page = env_number("PAGE", sc.page or 0) ~= 0
local joining = (sc.join or 0) ~= 0
local polling = (sc.poll or 0) ~= 0
if zipf ~= 0 and zipf <= 1 then
	fail("ZIPF must be > 1 (0 for uniform)")
end
if multi_share > 0 and multi_items < 2 then
	fail("carts need MULTI_ITEMS >= 2 and SKUS >= 2")
end

-- cdf[k] is P(SKU index < k) under Zipf; nil for uniform.
local cdf = nil
if zipf > 1 and skus > 1 then
	cdf = {}
	local sum = 0
	for k = 1, skus do
		sum = sum + k ^ -zipf
		cdf[k] = sum
	end
	for k = 1, skus do
		cdf[k] = cdf[k] / sum
	end
end

-- pick returns a SKU index in 0 .. skus-1.
local function pick()
	if cdf == nil then
		return math.random(0, skus - 1)
	end
	local u, lo, hi = math.random(), 1, skus
	while lo < hi do
		local mid = math.floor((lo + hi) / 2)
		if cdf[mid] < u then
			lo = mid + 1
		else
			hi = mid
		end
	end
	return lo - 1
end

-- Runs in wrk's main Lua state: one run id for every thread, and the threads
-- for done() to collect their counts.
local threads = {}
local run_id = nil

local function random_id()
	local f = io.open("/dev/urandom", "rb")
	if f then
		local b = f:read(4)
		f:close()
		return string.format("%02x%02x%02x%02x", b:byte(1, 4))
	end
	return string.format("%x", os.time())
end

setup = function(thread)
	run_id = run_id or os.getenv("RUN") or random_id()
	threads[#threads + 1] = thread
	thread:set("tid", #threads)
	thread:set("run", run_id)
end

-- Runs in each thread's Lua state.
local n = 0
counts = {}

local tickets = {}

init = function(args)
	math.randomseed(os.time() * 1000 + (tid or 0) * 7919 + math.floor(os.clock() * 1e6))
	if polling then
		local f = io.open(os.getenv("TICKETS") or "", "r")
		if not f then
			fail("scenario poll needs TICKETS, a file of ticket ids")
		end
		for line in f:lines() do
			if line ~= "" then
				tickets[#tickets + 1] = line
			end
		end
		f:close()
		if #tickets == 0 then
			fail("TICKETS has no ticket ids")
		end
	end
end

request = function()
	n = n + 1
	if page then
		return wrk.format("GET", "/api/v1/products/" .. prefix .. pick())
	end
	if polling then
		return wrk.format("GET", "/api/v1/queue/" .. tickets[math.random(1, #tickets)])
	end
	if joining then
		local body = string.format('{"user_id":"wrk%s-%d-%d"}', run, tid, n)
		return wrk.format("POST", "/api/v1/products/" .. prefix .. pick() .. "/queue", { ["Content-Type"] = "application/json" }, body)
	end
	local seq = string.format("%s-%d-%d", run, tid, n)
	local user
	if users > 0 then
		user = string.format("wrk%s-u%d", run, math.random(0, users - 1))
	else
		user = "wrk" .. seq
	end
	local items = {}
	if multi_share > 0 and math.random() < multi_share then
		local seen = {}
		while #items < multi_items do
			local k = pick()
			if not seen[k] then
				seen[k] = true
				items[#items + 1] = string.format('{"sku":"%s%d","quantity":1}', prefix, k)
			end
		end
	else
		items[1] = string.format('{"sku":"%s%d","quantity":1}', prefix, pick())
	end
	local body = string.format('{"user_id":"%s","items":[%s]}', user, table.concat(items, ","))
	local headers = { ["Content-Type"] = "application/json" }
	if keys then
		headers["Idempotency-Key"] = "wrk" .. seq
	end
	return wrk.format("POST", "/api/v1/orders", headers, body)
end

response = function(status, headers, body)
	local key = tostring(status)
	if status >= 400 then
		local code = body and body:match('"code":"([%w_]+)"')
		if code then
			key = key .. " " .. code
		end
	end
	counts[key] = (counts[key] or 0) + 1
end

done = function(summary, latency, requests)
	local total = {}
	for _, t in ipairs(threads) do
		for k, v in pairs(t:get("counts") or {}) do
			total[k] = (total[k] or 0) + v
		end
	end
	local lines = {}
	for k, v in pairs(total) do
		lines[#lines + 1] = string.format("  %-28s %10d", k, v)
	end
	table.sort(lines)
	local what = skus == 1 and "1 SKU" or string.format("%d SKUs (%s)", skus, zipf > 1 and ("Zipf " .. zipf) or "uniform")
	if multi_share > 0 then
		what = what .. string.format(", %.0f%% carts of %d items", 100 * multi_share, multi_items)
	else
		what = what .. ", 1 item per order"
	end
	if page then
		what = what .. ", GET the product page"
	end
	if joining then
		what = what .. ", join the waiting room"
	end
	if polling then
		what = what .. ", poll waiting-room tickets"
	end
	what = what .. (keys and ", an Idempotency-Key on every order" or ", no Idempotency-Key")
	what = what .. (users > 0 and string.format(", %d users", users) or ", a new user per order")
	io.write(string.format("scenario %s: %s (run %s)\n", name, what, run_id or "?"))
	io.write(string.format("requests %d, %.0f/s, p50 %.1f ms, p99 %.1f ms, socket errors %d\n",
		summary.requests, summary.requests / (summary.duration / 1e6),
		latency:percentile(50) / 1000, latency:percentile(99) / 1000,
		summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
	io.write("answers:\n" .. table.concat(lines, "\n") .. "\n")
end
