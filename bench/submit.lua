-- wrk script: POST one Almaty-survey response with a fresh client id each time.
-- The path and the Authorization header come from the environment (BENCH_PATH, BENCH_AUTH).
local path = os.getenv("BENCH_PATH")
local auth = os.getenv("BENCH_AUTH")
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)

local function uuid4()
  return (string.gsub("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx", "[xy]", function(c)
    local v = (c == "x") and math.random(0, 15) or math.random(8, 11)
    return string.format("%x", v)
  end))
end

local body = [[{"id": "%s", "respondent": {"group": "student", "gender": "female",
"age_band": "18-24", "territory_code": "750000000"}, "answers": {"aware": "yes",
"channels_known": ["hearings", "petitions"], "participated": true, "times_participated": 2,
"info_sources": ["social", "ngos"], "trust_akimat": 3, "influence": 2,
"information_access": "difficult", "last_hearing": "2025-05-14",
"suggestions": "Больше онлайн-слушаний"}, "language": "ru", "channel": "mobile"}]]

request = function()
  local headers = {["Content-Type"] = "application/json"}
  if auth and auth ~= "" then headers["Authorization"] = auth end
  return wrk.format("POST", path, headers, string.format(body, uuid4()))
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d non2xx=%d rps=%.1f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.errors.status, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
