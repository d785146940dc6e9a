"""The AWS Lambda entry: ``handler.aws_lambda.handler``.

The app (and its S3 and Docker clients) is built once per cold start, at module
scope, so warm invocations reuse it. ``lifespan="off"`` because Mangum would run the
lifespan on every invocation; the reaper runs on the Docker hosts' own API replicas.
Configure with the same ``RCE_*`` variables; ``RCE_POOL_SIZE`` defaults to 0 here.
"""

from __future__ import annotations

from mangum import Mangum

from handler.app import create_app

handler = Mangum(create_app(maintenance=False), lifespan="off")
