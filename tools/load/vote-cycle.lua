-- wrk script: participants voting through the JSON API, one participant per connection.
-- Run with as many threads as connections (-t N -c N): each thread's Lua state then drives
-- exactly one connection, one request at a time, as a real client does:
--   POST /api/v1/studies/bench/participants -> GET /api/v1/next -> POST .../vote -> next ...
-- until the participant is done, then a new participant joins. Every "recorded": true is
-- counted; done() prints cycles (votes) per second and the acknowledged total, which
-- tools/load/run.sh compares with the votes stored in the database.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local slug = os.getenv("ARENAXL_LOAD_STUDY") or "bench"
local state, token, assignment = "join", nil, nil
local joined, acked, errors, seq = 0, 0, 0, 0

function init(args)
   seq = 0
end

function request()
   if state == "join" then
      seq = seq + 1
      -- Unique per wrk process (its server's port), thread and join: one PID is one person,
      -- and the platform would rightly resume a PID that another connection already uses.
      local body = string.format('{"external":{"PROLIFIC_PID":"wrk-%s-%d-%d"}}', wrk.port or "0", id, seq)
      return wrk.format("POST", "/api/v1/studies/" .. slug .. "/participants",
         { ["Content-Type"] = "application/json" }, body)
   elseif state == "next" then
      return wrk.format("GET", "/api/v1/next", { ["Authorization"] = "Bearer " .. token })
   else
      return wrk.format("POST", "/api/v1/assignments/" .. assignment .. "/vote",
         { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" },
         '{"choice":"left","response_ms":1500}')
   end
end

function response(status, headers, body)
   if status >= 400 then
      errors = errors + 1
      wrk.thread:set("errors", errors)
      wrk.thread:set("last_error", string.format("%d %s %s", status, state, body:sub(1, 120)))
      state = "join"
      return
   end
   if state == "join" then
      token = body:match('"participant_token"%s*:%s*"([^"]+)"')
      joined = joined + 1
      state = token and "next" or "join"
   elseif state == "next" then
      assignment = body:match('"assignment_id"%s*:%s*"([^"]+)"')
      state = assignment and "vote" or "join"
   else
      if body:find('"recorded"%s*:%s*true') then
         acked = acked + 1
      end
      state = "next"
   end
   wrk.thread:set("acked", acked)
   wrk.thread:set("errors", errors)
   wrk.thread:set("joined", joined)
end

function done(summary, latency, requests)
   local acked_total, errors_total, joined_total = 0, 0, 0
   for _, t in ipairs(threads) do
      acked_total = acked_total + (t:get("acked") or 0)
      errors_total = errors_total + (t:get("errors") or 0)
      joined_total = joined_total + (t:get("joined") or 0)
   end
   local seconds = summary.duration / 1e6
   io.write(string.format("wrk: %d vote cycles in %.1f s = %.0f cycles/s; %d participants; %d errors\n",
      acked_total, seconds, acked_total / seconds, joined_total, errors_total))
   io.write(string.format("wrk: request latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
      latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
      latency.max / 1000))
   for _, t in ipairs(threads) do
      local e = t:get("last_error")
      if e then io.write("wrk: last error of a connection: " .. e .. "\n") break end
   end
   io.write(string.format("ACKED=%d\nCYCLES_PER_S=%.1f\nP99_MS=%.2f\n", acked_total, acked_total / seconds,
      latency:percentile(99) / 1000))
end
