#!/usr/bin/env python3
"""Signed Stripe webhook events for bench/run (bench_billing), one a line: the Stripe-Signature
header, a tab, the body (compact JSON, no tab or newline in it).

    python3 bench/stripe/events.py SECRET PREFIX N > events.tsv

Each event is a `customer.subscription.updated` shaped like Stripe's (about 1.3 kB), with the id
PREFIX_<n> (unique per run, so none is a duplicate), signed as Stripe signs: v1 = hex HMAC-SHA256
of "<t>.<body>" under the endpoint's secret (the whole whsec_... string), t = now. The signatures
are computed here, before the load, so that the load generator spends nothing on them; Stripe's
tolerance (300 s) leaves the run its time.
"""
import hashlib
import hmac
import json
import sys
import time


def event(prefix, n, now):
    customer = "cus_bench%06d" % (n % 1000)
    sub = "sub_bench%08d" % n
    return {
        "id": "%s_%d" % (prefix, n),
        "object": "event",
        "api_version": "2024-06-20",
        "created": now,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "customer.subscription.updated",
        "data": {
            "object": {
                "id": sub,
                "object": "subscription",
                "customer": customer,
                "status": "active",
                "cancel_at_period_end": False,
                "collection_method": "charge_automatically",
                "currency": "usd",
                "current_period_start": now - 86400,
                "current_period_end": now + 29 * 86400,
                "created": now - 86400 * 40,
                "start_date": now - 86400 * 40,
                "latest_invoice": "in_bench%08d" % n,
                "metadata": {"tenant_slug": "bench-%d" % (n % 1000)},
                "items": {
                    "object": "list",
                    "data": [{
                        "id": "si_bench%08d" % n,
                        "object": "subscription_item",
                        "quantity": 1,
                        "price": {
                            "id": "price_bench_pro_monthly",
                            "object": "price",
                            "currency": "usd",
                            "unit_amount": 4900,
                            "recurring": {"interval": "month", "interval_count": 1,
                                          "usage_type": "licensed"},
                            "product": "prod_bench_pro",
                            "lookup_key": "pro_monthly",
                        },
                    }],
                    "has_more": False,
                    "url": "/v1/subscription_items?subscription=" + sub,
                },
            },
            "previous_attributes": {"status": "trialing"},
        },
    }


def main():
    secret, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    now = int(time.time())
    key = secret.encode()
    out = sys.stdout
    for n in range(count):
        body = json.dumps(event(prefix, n, now), separators=(",", ":"))
        sig = hmac.new(key, ("%d.%s" % (now, body)).encode(), hashlib.sha256).hexdigest()
        out.write("t=%d,v1=%s\t%s\n" % (now, sig, body))


if __name__ == "__main__":
    main()
