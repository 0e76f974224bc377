"""Independent checks of Sovereign's access tokens with PyJWT.

Usage: tokens.py JWKS_FILE TOKEN_FILE PRIVATE_KEY_PEM PUBLIC_KEY_PEM

1. Verifies TOKEN with the key the JWKS document names (as another service would), printing
   the claims as `verified`.
2. Re-signs those claims into hostile variants, printing them under `forged`, plus one
   well-formed `control` token signed by the same private key.
"""

import base64
import hashlib
import hmac
import json
import sys
import time

import jwt

jwks = json.load(open(sys.argv[1]))
token = open(sys.argv[2]).read().strip()
private_pem = open(sys.argv[3]).read()
public_pem = open(sys.argv[4]).read()

header = jwt.get_unverified_header(token)
key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
verified = jwt.decode(
    token,
    jwt.PyJWK(key).key,
    algorithms=["EdDSA"],
    audience="sovereign-api",
    issuer="sovereign",
    options={"require": ["exp", "iat", "nbf", "sub", "aud", "iss"]},
)

kid = header["kid"]
now = int(time.time())


def sign(claims, headers=None, algorithm="EdDSA", key=private_pem):
    h = {"typ": "at+jwt", "kid": kid}
    h.update(headers or {})
    return jwt.encode(claims, key, algorithm=algorithm, headers=h)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(alg, claims):
    head = b64(json.dumps({"alg": alg, "typ": "at+jwt"}).encode())
    body = b64(json.dumps(claims).encode())
    return f"{head}.{body}."


def hs256_with(secret, claims):
    head = b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def variant(**changes):
    c = dict(verified)
    for k, v in changes.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def tampered(**changes):
    """The real token with its payload changed and its signature kept."""
    head, _, sig = token.split(".")
    claims = dict(verified)
    claims.update(changes)
    return f"{head}.{b64(json.dumps(claims).encode())}.{sig}"


def foreign_key_pem():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


fresh = variant(iat=now, nbf=now, exp=now + 300)
forged = {
    "alg none": unsigned("none", fresh),
    "alg NoNe": unsigned("NoNe", fresh),
    "HS256 keyed with the public key": hs256_with(public_pem.encode(), fresh),
    "expired": sign(variant(iat=now - 3600, nbf=now - 3600, exp=now - 600)),
    "nbf in the future": sign(variant(iat=now, nbf=now + 600, exp=now + 900)),
    "string exp": sign(variant(iat=now, nbf=now, exp=str(now + 300))),
    "no exp": sign(variant(iat=now, nbf=now, exp=None)),
    "no aud": sign(variant(iat=now, nbf=now, exp=now + 300, aud=None)),
    "wrong aud": sign(variant(iat=now, nbf=now, exp=now + 300, aud="another-api")),
    "no iss": sign(variant(iat=now, nbf=now, exp=now + 300, iss=None)),
    "wrong iss": sign(variant(iat=now, nbf=now, exp=now + 300, iss="https://evil.example")),
    "no typ": jwt.encode(fresh, private_pem, algorithm="EdDSA", headers={"kid": kid}),
    "typ JWT": sign(fresh, {"typ": "JWT"}),
    "kid injection": sign(fresh, {"kid": "../../../../dev/null"}),
    "jku injection": sign(fresh, {"jku": "https://evil.example/jwks.json", "kid": "evil"}),
    "aal2 and otp added, signature kept": tampered(aal="aal2", amr=["pwd", "otp"]),
    "aal2 signed by another key": sign(
        variant(iat=now, nbf=now, exp=now + 300, aal="aal2", amr=["pwd", "otp"], auth_time=now),
        key=foreign_key_pem(),
    ),
}
print(json.dumps({"verified": verified, "header": header, "forged": forged, "control": sign(fresh)}))
