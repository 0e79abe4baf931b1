-- Paces wrk: each connection waits 5 ms before its next request. Still
-- hundreds of new connections during a restart's gap, but the fast servers
-- (nginx, HAProxy, Go) no longer take both cores from the slow ones that
-- restart beside them in the same test run.
function delay()
  return 5
end
