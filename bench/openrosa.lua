-- wrk script: POST one Almaty-survey response as an OpenRosa submission (multipart, part
-- xml_submission_file) with a fresh instanceID each time: the same answers as submit.lua.
-- The path (with the collector token) comes from the environment (BENCH_PATH).
local path = os.getenv("BENCH_PATH")
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)

local function uuid4()
  return (string.gsub("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx", "[xy]", function(c)
    local v = (c == "x") and math.random(0, 15) or math.random(8, 11)
    return string.format("%x", v)
  end))
end

local xml = [[<?xml version='1.0' encoding='UTF-8' ?><data id="almaty-participation" version="1" ]]
  .. [[xmlns:jr="http://openrosa.org/javarosa" xmlns:orx="http://openrosa.org/xforms">]]
  .. [[<_respondent><group>student</group><gender>female</gender><age_band>18-24</age_band>]]
  .. [[<territory_code>750000000</territory_code></_respondent><aware>yes</aware>]]
  .. [[<channels_known>hearings petitions</channels_known><participated>true</participated>]]
  .. [[<times_participated>2</times_participated><info_sources>social ngos</info_sources>]]
  .. [[<trust_akimat>3</trust_akimat><influence>2</influence>]]
  .. [[<information_access>difficult</information_access><last_hearing>2025-05-14</last_hearing>]]
  .. [[<suggestions>Больше онлайн-слушаний</suggestions>]]
  .. [[<_start>2026-12-01T10:00:00.000+05:00</_start><_end>2026-12-01T10:07:31.250+05:00</_end>]]
  .. [[<meta><instanceID>uuid:%s</instanceID></meta></data>]]
local boundary = "kenes-bench-3f9a1c"
local part = "--" .. boundary .. "\r\n"
  .. 'Content-Disposition: form-data; name="xml_submission_file"; filename="submission.xml"\r\n'
  .. "Content-Type: text/xml\r\n\r\n%s\r\n--" .. boundary .. "--\r\n"

request = function()
  local headers = {
    ["Content-Type"] = "multipart/form-data; boundary=" .. boundary,
    ["X-OpenRosa-Version"] = "1.0",
  }
  return wrk.format("POST", path, headers, string.format(part, string.format(xml, uuid4())))
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d non2xx=%d rps=%.1f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.errors.status, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
