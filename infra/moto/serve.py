"""moto's server, with every request handled atomically.

`moto_server` serves requests on parallel threads, and moto's DynamoDB TransactWriteItems checks its
conditions, writes, and on failure restores a deep copy of the whole table, all without a lock: two
concurrent transactions can both pass a version check, and one request's rollback can erase
another's committed write. Real DynamoDB serializes conditional writes per item. Handling one
request at a time makes moto linearizable, so keyward's concurrency tests test keyward, not moto.

Usage: python serve.py [-H HOST] [-p PORT]
"""

import argparse
import sys
import threading
import time
import traceback

import flask

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app


class Serialized:
    """A WSGI app that runs the wrapped app for one request at a time, body included.

    Past keyward's 2 s attempt timeout the SDK gives up on an attempt that moto may still apply, so
    a test would see a lost answer no fault proxy injected. So a request that waits for the lock
    longer than half of that is logged, and so is one that holds it longer than a quarter (the test
    command prints these lines when a test fails)."""

    SLOW_WAIT_SECS = 1.0
    SLOW_HOLD_SECS = 0.5

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        operation = environ.get("HTTP_X_AMZ_TARGET") or environ.get("PATH_INFO")
        arrived = time.monotonic()
        with self.lock:
            taken = time.monotonic()
            if taken - arrived > self.SLOW_WAIT_SECS:
                log(f"moto queue: {operation} waited {taken - arrived:.2f} s for the requests ahead of it")
            answer = list(self.app(environ, start_response))
            held = time.monotonic() - taken
            if held > self.SLOW_HOLD_SECS:
                log(f"moto slow: {operation} held the lock for {held:.2f} s")
            return answer


def log(line):
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def log_exceptions():
    """Writes the traceback of any exception moto turns into a 500 to stderr (Flask swallows it)."""
    original = flask.Flask.handle_exception

    def handle_exception(app, error):
        log("moto raised: " + "".join(traceback.format_exception(error)))
        return original(app, error)

    flask.Flask.handle_exception = handle_exception


def roll_back_transactions_item_by_item():
    """moto's TransactWriteItems deep-copies every table it names before running, so that a
    cancelled transaction can put the copies back: the cost grows with the table, not the
    transaction. keyward's Stripe stream test writes ~800 items to one table, and by its end each
    transaction held the lock above for about a second, queueing other requests towards the SDK's
    2 s attempt timeout. A transaction touches only the items it names (at most 100), so those are
    what is saved, and restored in place if the transaction raises."""
    import copy
    import moto.dynamodb.models as models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    class NoTableCopies:
        """moto's module-level `copy` for its backend: tables are no longer copied (the rollback
        below replaces that), everything else is."""

        @staticmethod
        def deepcopy(obj, *args, **kwargs):
            return obj if isinstance(obj, Table) else copy.deepcopy(obj, *args, **kwargs)

    def named_item(backend, entry):
        """(table, hash key, range key) of one entry of a transaction; None when moto will refuse
        the entry before writing anything (unknown table, incomplete key)."""
        if not isinstance(entry, dict) or len(entry) != 1:
            return None
        (op_type, op), = entry.items()
        table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
        key = op.get("Item" if op_type == "Put" else "Key") if table is not None else None
        if not isinstance(key, dict) or table.hash_key_attr not in key:
            return None
        if table.range_key_attr is not None and table.range_key_attr not in key:
            return None
        range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr is not None else None
        return table, DynamoType(key[table.hash_key_attr]), range_value

    def restore(table, hash_value, range_value, item):
        if range_value is None:
            if item is None:
                table.items.pop(hash_value, None)
            else:
                table.items[hash_value] = item
        elif item is None:
            table.items.get(hash_value, {}).pop(range_value, None)
        else:
            table.items[hash_value][range_value] = item

    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items, *args, **kwargs):
        saved = []
        for entry in transact_items if isinstance(transact_items, list) else []:
            named = named_item(self, entry)
            if named is not None:
                table, hash_value, range_value = named
                saved.append((*named, copy.deepcopy(table.get_item(hash_value, range_value))))
        try:
            return original(self, transact_items, *args, **kwargs)
        except BaseException:
            for table, hash_value, range_value, item in reversed(saved):
                restore(table, hash_value, range_value, item)
            raise

    models.copy = NoTableCopies
    models.DynamoDBBackend.transact_write_items = transact_write_items


def generate_private_keys_on_first_use():
    """moto's KMS generates a 2048-bit RSA private key for every new key, symmetric ones included,
    though only the asymmetric operations (Sign, Verify, GetPublicKey) ever read it: 75 ms under the
    lock above per CreateKey. Each test API creates its own key: forty fault cases starting at once
    queued requests past keyward's 2 s attempt timeout (a lost answer) and its 5 s operation timeout
    (a failed call). The key is now generated when one of those operations first asks for it."""
    import moto.kms.models as models

    generate = models.generate_private_key

    class PrivateKeyOnFirstUse:
        def __init__(self, key_spec):
            self.key_spec = key_spec
            self.generated = None

        def __getattr__(self, name):
            # Only names this class does not define land here; copying an instance asks for dunder
            # names before __init__ has run, and those must not recurse into `generated`.
            if name.startswith("__") or name in ("key_spec", "generated"):
                raise AttributeError(name)
            if self.generated is None:
                self.generated = generate(self.key_spec)
            return getattr(self.generated, name)

    models.generate_private_key = PrivateKeyOnFirstUse


def simulate_principal_policy():
    """IAM's `SimulatePrincipalPolicy`, which moto does not implement, for `keyward-admin doctor`:
    each action on each resource is `explicitDeny` when a Deny statement of the principal's policies
    (inline, attached, and a user's groups') matches it, else `allowed` when an Allow does, else
    `implicitDeny` — IAM's evaluation of identity policies, with `*`/`?` wildcards, `NotAction` and
    `NotResource`, and a permissions boundary that must allow too. Statements with a `Condition` are
    not evaluated here: the answer names them in `MissingContextValues`, as IAM does for context the
    caller did not give, and counts them as not matching."""
    import fnmatch
    import json
    from urllib.parse import unquote

    from moto.core.responses import ActionResult
    from moto.iam.responses import IamResponse

    def matches(patterns, value, case_sensitive):
        patterns = [patterns] if isinstance(patterns, str) else patterns
        if not case_sensitive:
            value = value.lower()
            patterns = [p.lower() for p in patterns]
        return any(fnmatch.fnmatchcase(value, p.replace("[", "[[]")) for p in patterns)

    def statements(document):
        document = json.loads(unquote(document)) if isinstance(document, str) else document
        found = document.get("Statement", [])
        return [found] if isinstance(found, dict) else found

    def applies(statement, action, resource):
        if "Action" in statement and not matches(statement["Action"], action, False):
            return False
        if "NotAction" in statement and matches(statement["NotAction"], action, False):
            return False
        if "Resource" in statement and not matches(statement["Resource"], resource, True):
            return False
        if "NotResource" in statement and matches(statement["NotResource"], resource, True):
            return False
        return True

    def decide(documents, action, resource, conditions):
        allowed = False
        for document in documents:
            for statement in statements(document):
                if not applies(statement, action, resource):
                    continue
                if "Condition" in statement:
                    conditions.update(k for op in statement["Condition"].values() for k in op)
                    continue
                if statement.get("Effect") == "Deny":
                    return "explicitDeny"
                allowed = allowed or statement.get("Effect") == "Allow"
        return "allowed" if allowed else "implicitDeny"

    def default_document(policy):
        return next(v.document for v in policy.versions if v.version_id == policy.default_version_id)

    def simulate(self):
        source = self._get_param("PolicySourceArn")
        actions = self._get_param("ActionNames", [])
        resources = self._get_param("ResourceArns", []) or ["*"]
        principal = (
            self.backend.get_role_by_arn(source)
            if ":role/" in source
            else self.backend.get_user(source.rsplit("/", 1)[-1])
        )
        documents = list(principal.policies.values())
        documents += [default_document(p) for p in principal.managed_policies.values()]
        if ":user/" in source:
            for group in self.backend.get_groups_for_user(principal.name):
                documents += list(group.policies.values())
                documents += [default_document(p) for p in group.managed_policies.values()]
        boundary_arn = getattr(principal, "permissions_boundary_arn", None)
        boundary = [default_document(self.backend.get_policy(boundary_arn))] if boundary_arn else None
        results = []
        for action in actions:
            for resource in resources:
                conditions = set()
                decision = decide(documents, action, resource, conditions)
                if decision == "allowed" and boundary is not None and decide(boundary, action, resource, conditions) != "allowed":
                    decision = "implicitDeny"
                results.append(
                    {
                        "EvalActionName": action,
                        "EvalResourceName": resource,
                        "EvalDecision": decision,
                        "MatchedStatements": [],
                        "MissingContextValues": sorted(conditions),
                    }
                )
        return ActionResult({"EvaluationResults": results, "IsTruncated": False})

    IamResponse.simulate_principal_policy = simulate


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    log_exceptions()
    roll_back_transactions_item_by_item()
    generate_private_keys_on_first_use()
    simulate_principal_policy()
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # as moto_server sets it: tracebacks reach the log
    run_simple(args.host, args.port, Serialized(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
