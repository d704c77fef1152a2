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

    A request that waits for the lock longer than half of keyward's 2 s attempt timeout is logged:
    past 2 s the SDK gives up on an attempt moto may still apply, so a test sees a lost answer that
    no fault proxy injected (the test command prints these lines when a test fails)."""

    SLOW_WAIT_SECS = 1.0

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        arrived = time.monotonic()
        with self.lock:
            waited = time.monotonic() - arrived
            if waited > self.SLOW_WAIT_SECS:
                operation = environ.get("HTTP_X_AMZ_TARGET") or environ.get("PATH_INFO")
                sys.stderr.write(f"moto queue: {operation} waited {waited:.2f} s for the requests ahead of it\n")
                sys.stderr.flush()
            return list(self.app(environ, start_response))


def log_exceptions():
    """Writes the traceback of any exception moto turns into a 500 to stderr (Flask swallows it)."""
    original = flask.Flask.handle_exception

    def handle_exception(app, error):
        sys.stderr.write("moto raised: " + "".join(traceback.format_exception(error)) + "\n")
        sys.stderr.flush()
        return original(app, error)

    flask.Flask.handle_exception = handle_exception


def copy_each_table_once_per_transaction():
    """moto's TransactWriteItems backs up the whole table for a rollback once per item of the
    transaction, before running any of them: N deep copies of the same, unchanged table. One copy
    per table is the same backup. With many items in a table each copy takes tens of milliseconds,
    and requests queue behind the lock above until the SDK's 2 s attempt limit runs out."""
    import copy
    import moto.dynamodb.models as models
    from moto.dynamodb.models.table import Table

    backups = threading.local()

    class CopyEachTableOnce:
        @staticmethod
        def deepcopy(obj, *args, **kwargs):
            made = getattr(backups, "made", None)
            if made is None or not isinstance(obj, Table):
                return copy.deepcopy(obj, *args, **kwargs)
            if id(obj) not in made:
                made[id(obj)] = copy.deepcopy(obj, *args, **kwargs)
            return made[id(obj)]

    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, *args, **kwargs):
        backups.made = {}
        try:
            return original(self, *args, **kwargs)
        finally:
            backups.made = None

    models.copy = CopyEachTableOnce
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    log_exceptions()
    copy_each_table_once_per_transaction()
    generate_private_keys_on_first_use()
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # as moto_server sets it: tracebacks reach the log
    run_simple(args.host, args.port, Serialized(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
