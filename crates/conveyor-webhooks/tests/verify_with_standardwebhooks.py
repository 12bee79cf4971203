"""Checks deliveries recorded by a real receiver with the official Standard Webhooks verifier.

Usage: python3 verify_with_standardwebhooks.py CASES.json

CASES.json is a list of {"name", "secret", "headers", "body", "expect"} objects where "expect"
is "valid" or "invalid". Prints one line per case and exits 1 if any case disagrees, so the Rust
test that wrote the file can tell that the verifier both accepted and rejected what it should.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as cases_file:
        cases = json.load(cases_file)
    disagreements = 0
    for case in cases:
        try:
            Webhook(case["secret"]).verify(case["body"].encode("utf-8"), case["headers"])
            verdict = "valid"
        except WebhookVerificationError as error:
            verdict = f"invalid ({error})"
        agrees = verdict.split(" ")[0] == case["expect"]
        disagreements += 0 if agrees else 1
        print(f"{'ok' if agrees else 'MISMATCH'}: {case['name']}: {verdict}")
    print(f"{len(cases)} cases, {disagreements} mismatches")
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
