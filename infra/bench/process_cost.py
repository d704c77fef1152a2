#!/usr/bin/env python3
"""What a function process costs before it can serve: each binary is started N times with the
aws-mode settings `scripts/bench` gives it, but with its Runtime API on a closed port, so it runs
its whole init, fails its first `next` and exits. Prints the median lifetime and, per process, user
and kernel CPU and minor page faults (getrusage). BENCHMARKS.md's "Init" breakdown comes from this.

    python3 infra/bench/process_cost.py "$CARGO_TARGET_DIR"/release/{bench-hello,internal-keys}

Extra settings can be given as NAME=VALUE before the binaries (say SSL_CERT_FILE=...).
"""

import resource
import socket
import statistics
import subprocess
import sys
import time

RUNS = 200


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings(extra):
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{closed_port()}",
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "KEYWARD_MODE": "aws",
        "KEYWARD_TABLE_NAME": "keyward-bench",
        "KEYWARD_KMS_KEY_ID": "bench-key",
        "KEYWARD_AUTH0_ISSUER": "https://tenant.example.auth0.com/",
        "KEYWARD_AUTH0_AUDIENCE": "https://api.keyward.dev",
        "KEYWARD_AUTH0_CLIENT_ID": "web-client",
        "KEYWARD_AUTH0_DEVICE_CLIENT_ID": "cli-client",
        "KEYWARD_AUTH0_CLIENT_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:auth0-AbCdEf",
        "KEYWARD_AUTH0_CALLBACK_URL": "https://api.keyward.dev/auth/callback",
        "KEYWARD_INTERNAL_PRINCIPALS": "{}",
        "KEYWARD_API_ID": "local",
        "KEYWARD_ACCOUNT_ID": "000000000000",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
    }
    return {**base, **extra}


def measure(binary, env):
    lifetimes = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        lifetimes.append((time.perf_counter() - started) * 1000)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = (after.ru_utime - before.ru_utime) / RUNS * 1000
    kernel = (after.ru_stime - before.ru_stime) / RUNS * 1000
    faults = (after.ru_minflt - before.ru_minflt) / RUNS
    return statistics.median(lifetimes), user, kernel, faults


def main():
    args = sys.argv[1:]
    extra = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("/"))
    binaries = [a for a in args if a not in {f"{k}={v}" for k, v in extra.items()}]
    if not binaries:
        sys.exit(__doc__)
    env = settings(extra)
    print("| binary | lifetime ms (median) | user CPU ms | kernel CPU ms | minor page faults |")
    print("|---|---|---|---|---|")
    for binary in binaries:
        lifetime, user, kernel, faults = measure(binary, env)
        print(f"| {binary.rsplit('/', 1)[-1]} | {lifetime:.2f} | {user:.2f} | {kernel:.2f} | {faults:.0f} |")


if __name__ == "__main__":
    main()
