#!/usr/bin/env python3
"""Checks a wrk run of bench/wrk/activity.lua against the workers' own counts.

    verify.py URL SENT...

Each SENT is a file activity.lua's done() wrote (a warm-up's and the run's, say): per user the
requests wrk sent, then the totals. They are added up.
Every user's count is read with GET /user/<user>/count (one keep-alive connection). wrk
neither retries nor says which user an answer was for, so what is proved is:
  * no duplicate: no worker counts more calls than were sent to it (per user, exact);
  * no loss: the workers together count at least every call answered 200, and at most every
    call sent (the difference is calls in flight when wrk stopped: at most one per connection).
Both hold only if wrk saw no error and no non-2xx answer, which is checked first.
Exit status 0 if all hold; 1 with the first failure printed otherwise.
"""
import http.client
import sys
import urllib.parse


def main():
    url = sys.argv[1]
    sent, totals, errors = {}, {"sent": 0, "answered": 0}, {}
    for path in sys.argv[2:]:
        for line in open(path):
            words = line.split()
            if words[0] == "total":
                totals[words[1]] += int(words[2])
            elif words[0] == "errors":
                for k, v in zip(words[1::2], map(int, words[2::2])):
                    errors[k] = errors.get(k, 0) + v
            else:
                sent[words[0]] = sent.get(words[0], 0) + int(words[1])
    bad = {k: v for k, v in errors.items() if v}
    if bad:
        sys.exit(f"wrk saw errors: {bad}")
    target = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    counted = 0
    for user, n in sent.items():
        conn.request("GET", f"/user/{user}/count")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            sys.exit(f"GET /user/{user}/count: {response.status} {body[:200]!r}")
        count = int(body)
        if count > n:
            sys.exit(f"{user}: counts {count} calls, but only {n} were sent (a duplicate)")
        counted += count
    answered, all_sent = totals["answered"], totals["sent"]
    if counted < answered:
        sys.exit(f"workers count {counted} calls, but {answered} were answered 200 (a loss)")
    if counted > all_sent:
        sys.exit(f"workers count {counted} calls, but only {all_sent} were sent")
    print(f"verified: {len(sent)} users, {answered} answered, {counted} counted, "
          f"{all_sent} sent ({counted - answered} completed after wrk stopped)")


main()
