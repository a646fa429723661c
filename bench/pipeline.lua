-- pipeline.lua — wrk script: each write carries DEPTH pipelined GET requests.
--   wrk -t1 -c64 -d5s -s bench/pipeline.lua http://127.0.0.1:PORT/ -- 16
-- wrk counts every response, so Requests/sec is responses per second; its
-- latency figures are per batch and are not reported by bench/server.sh.
init = function(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format()
  end
  req = table.concat(r)
end

request = function()
  return req
end
