"""The vendor's own SDKs against the emulator: signing V2 (aliyun-python-sdk-core) and V3
(the Tea SDK alibabacloud_ecs20140526), and a wrong secret refused in a form the core
SDK understands. Usage: signatures.py HOST PORT KEY SECRET. Prints one line per check;
exits non-zero on the first failure."""

import json
import sys

from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkecs.request.v20140526.DescribeInstanceTypesRequest import (
    DescribeInstanceTypesRequest,
)
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi import models as openapi_models

HOST, PORT, KEY, SECRET = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
REGION = "cn-hangzhou"


def check(cond, what):
    if not cond:
        print("FAIL", what)
        sys.exit(1)
    print("ok", what)


def core_call(secret):
    client = AcsClient(KEY, secret, REGION, port=PORT, auto_retry=False)
    req = DescribeInstanceTypesRequest()
    req.set_endpoint(HOST)
    req.set_protocol_type("http")
    req.set_accept_format("json")
    return json.loads(client.do_action_with_exception(req))


def tea_client(secret, **extra):
    cfg = openapi_models.Config(
        access_key_id=KEY,
        access_key_secret=secret,
        region_id=REGION,
        endpoint="%s:%d" % (HOST, PORT),
        protocol="http",
        **extra
    )
    return EcsClient(cfg)


def tea_call(secret, **extra):
    resp = tea_client(secret, **extra).describe_instance_types(
        ecs_models.DescribeInstanceTypesRequest()
    )
    return resp.body.to_map()


# V2, the core SDK.
doc = core_call(SECRET)
check(len(doc["InstanceTypes"]["InstanceType"]) > 0, "core SDK (V2) DescribeInstanceTypes")

try:
    core_call("wrong-" + SECRET)
    check(False, "core SDK (V2) with a wrong secret is refused")
except ServerException as e:
    # The core SDK rewrites SignatureDoesNotMatch to InvalidAccessKeySecret only when the
    # server's string to sign (after "server string to sign is:") equals its own.
    print("core SDK error:", e.get_error_code(), e.get_http_status())
    check(
        e.get_http_status() == 400 and e.get_error_code() == "InvalidAccessKeySecret",
        "core SDK (V2) wrong secret -> SignatureDoesNotMatch with the server's string to sign",
    )

# V3, the Tea SDK's default.
doc = tea_call(SECRET)
check(len(doc["InstanceTypes"]["InstanceType"]) > 0, "Tea SDK (V3) DescribeInstanceTypes")

try:
    tea_call("wrong-" + SECRET)
    check(False, "Tea SDK (V3) with a wrong secret is refused")
except Exception as e:  # Tea raises its own exception type, with .code and .message
    code, msg = getattr(e, "code", None), getattr(e, "message", str(e))
    print("Tea SDK error:", code, msg.splitlines()[0] if msg else msg)
    check(code == "SignatureDoesNotMatch", "Tea SDK (V3) wrong secret -> SignatureDoesNotMatch")
    check(
        "server string to sign is:ACS3-HMAC-SHA256" in msg,
        "V3 refusal carries the server's V3 string to sign",
    )

# V2 through the Tea SDK's legacy switch.
doc = tea_call(SECRET, signature_algorithm="v2")
check(len(doc["InstanceTypes"]["InstanceType"]) > 0, "Tea SDK (V2 switch) DescribeInstanceTypes")
print("all checks passed")
