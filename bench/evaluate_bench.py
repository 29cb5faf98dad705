"""Requests per second through iamtrim's IAM evaluator (``iamtrim.evaluate``).

    python bench/evaluate_bench.py [--requests 100000] [--repeat 3]

A mix of 16 requests (four S3 and KMS actions on four resources) against a policy with action
wildcards, a KMS ``kms:ViaService`` condition, a TLS deny and a policy variable: the shapes
``verify`` and ``diff`` evaluate. It was a timed unit test; timing belongs here (a test's clock
fails under load, and says nothing the benchmark does not).
"""

from __future__ import annotations

import argparse
import time

from iamtrim.evaluate import Request, evaluate
from iamtrim.model.policy import Policy

ACCT = "111122223333"
USER = f"arn:aws:iam::{ACCT}:user/alice"
KEY = f"arn:aws:kms:us-east-1:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OBJ = "arn:aws:s3:::data-bucket/reports/q1.csv"

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["s3:Get*", "s3:List*"],
            "Resource": ["arn:aws:s3:::data-bucket", "arn:aws:s3:::data-bucket/*"],
        },
        {
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": KEY,
            "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}},
        },
        {
            "Effect": "Deny",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        {
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": "arn:aws:s3:::data-bucket/${aws:username}/*",
        },
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    policies = [Policy.from_json(POLICY, name="p")]
    requests = [
        Request.make(USER, a, r, {"aws:SecureTransport": "true"})
        for a in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "kms:Decrypt")
        for r in (OBJ, "arn:aws:s3:::data-bucket/alice/x", "arn:aws:s3:::other/x", KEY)
    ]
    for run in range(1, args.repeat + 1):
        start = time.perf_counter()
        for i in range(args.requests):
            evaluate(requests[i % len(requests)], policies)
        elapsed = time.perf_counter() - start
        rate = args.requests / elapsed
        print(f"run {run}: {args.requests:,} requests in {elapsed:.2f} s = {rate:,.0f} requests/s")


if __name__ == "__main__":
    main()
