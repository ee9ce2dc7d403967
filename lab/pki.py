"""The lab's certificates and keys, made with ``cryptography``.

One CA per lab (``.lab/ca/``) signs, for every cluster: the API server's serving certificate, etcd's
certificate, the client certificates of the admin, the controller manager, the scheduler, KWOK and
the API server's etcd client; plus each cluster's service-account signing key pair. Files that exist
are kept, so a restart reuses them (and tokens issued before stay valid).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .layout import LAB_DIR, Cluster

CA_DIR = LAB_DIR / "ca"
CA_CERT = CA_DIR / "ca.crt"
CA_KEY = CA_DIR / "ca.key"

_CA_DAYS = 3650
_LEAF_DAYS = 825


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_ca_key() -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(CA_KEY.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{CA_KEY} is not an ECDSA key")
    return key


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def ensure_ca() -> None:
    if CA_CERT.exists() and CA_KEY.exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name("istio-mesh-lab-ca", ("istio-mesh-lab",))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(CA_KEY, _key_pem(key), private=True)
    _write(CA_CERT, cert.public_bytes(serialization.Encoding.PEM))


def _issue(
    cert_path: Path,
    key_path: Path,
    cn: str,
    orgs: tuple[str, ...] = (),
    server: bool = False,
    client: bool = False,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> None:
    if cert_path.exists() and key_path.exists():
        return
    ca_key = _load_ca_key()
    ca_cert = x509.load_pem_x509_certificate(CA_CERT.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, orgs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if dns or ips:
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))


# Client identities: (file stem, CN, organisations). system:masters is the admin group; the
# controller manager and scheduler use their built-in RBAC users. KWOK writes Node and Pod status for
# every fake node, which the Node authorizer would refuse to a single kubelet identity: it runs as an
# admin of the lab.
CLIENTS = {
    "admin": ("lab-admin", ("system:masters",)),
    "kube-controller-manager": ("system:kube-controller-manager", ()),
    "kube-scheduler": ("system:kube-scheduler", ()),
    "kwok": ("kwok-controller", ("system:masters",)),
    "apiserver-etcd-client": ("kube-apiserver-etcd-client", ()),
    # The API server's identity towards aggregated API servers (request-header authentication).
    "front-proxy-client": ("front-proxy-client", ()),
    # The API server's identity towards kubelets (here KWOK's server).
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ("system:masters",)),
}


def ensure_cluster_pki(c: Cluster) -> None:
    ensure_ca()
    p = c.pki
    _issue(
        p / "apiserver.crt",
        p / "apiserver.key",
        "kube-apiserver",
        server=True,
        dns=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        ips=(c.ip, "127.0.0.1", c.kubernetes_service_ip),
    )
    # etcd: one certificate for serving clients and for its (single-member) peer listener.
    _issue(
        p / "etcd.crt",
        p / "etcd.key",
        f"etcd-{c.name}",
        server=True,
        client=True,
        dns=("localhost",),
        ips=(c.ip, "127.0.0.1"),
    )
    # KWOK's server plays the fake nodes' kubelet (port-forward): served on the cluster's address.
    _issue(p / "kwok-serving.crt", p / "kwok-serving.key", f"kwok-{c.name}", server=True, ips=(c.ip,))
    for stem, (cn, orgs) in CLIENTS.items():
        _issue(p / f"{stem}.crt", p / f"{stem}.key", cn, orgs, client=True)
    # Service-account token signing keys (RS256, what every token consumer understands).
    if not (p / "sa.key").exists() or not (p / "sa.pub").exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write(p / "sa.key", _key_pem(key), private=True)
        _write(
            p / "sa.pub",
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        )
