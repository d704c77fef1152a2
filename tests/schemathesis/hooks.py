"""Schemathesis hooks for keyward's contract run (tests/tests/api_contract.rs).

Internal routes are signed with SigV4 (service execute-api) for a principal the run's gateway knows,
over the exact bytes requests sends, as an AWS SDK would; about half of the generated `{uid}` values
are replaced by the signed-in test user, so the handlers behind the authorizer are reached too.
"""
import hashlib
import os

import requests
import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

CREDENTIALS = Credentials(os.environ["KEYWARD_CONTRACT_ACCESS_KEY"], os.environ["KEYWARD_CONTRACT_SECRET_KEY"])
REGION = os.environ.get("KEYWARD_CONTRACT_REGION", "us-east-1")
USER = os.environ["KEYWARD_CONTRACT_USER"]


class SigV4(requests.auth.AuthBase):
    """Signs the prepared request: its final URL and body bytes."""

    def __call__(self, prepared):
        body = prepared.body or b""
        if isinstance(body, str):
            body = body.encode()
        signed = AWSRequest(method=prepared.method, url=prepared.url, data=body)
        if "Content-Type" in prepared.headers:
            signed.headers["Content-Type"] = prepared.headers["Content-Type"]
        SigV4Auth(CREDENTIALS, "execute-api", REGION).add_auth(signed)
        for name, value in signed.headers.items():
            prepared.headers[name] = value
        return prepared


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    uid = (path_parameters or {}).get("uid")
    if uid is not None and hashlib.sha256(str(uid).encode()).digest()[0] % 2 == 0:
        path_parameters["uid"] = USER
    return path_parameters


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.path.startswith("/internal/"):
        kwargs["auth"] = SigV4()
