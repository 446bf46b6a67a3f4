"""A man in the middle between the halfkey client and a real halfkeyd, both
on 127.0.0.1, for tests that need a malicious server or a network that
fails at a chosen step.

It terminates TLS with the server's own certificate and key (so the
client's SPKI pin matches), opens its own TLS connection to halfkeyd and
passes every byte through, except WebSocket messages after an upgrade: each
whole message goes to hook(direction, message) with direction "c2s" or
"s2c"; the hook returns the list of messages to send on (the same one,
changed ones, or none to drop it) or raises Cut to close both sides.
Control frames pass unchanged. Plain HTTP traffic goes to
http_hook(direction, request head, data) before it is passed on (the
request head itself as "c2s" data first): the hook may block (to hold a
request or its answer) or raise Cut. Listens on 127.0.0.1 only."""
import json
import os
import select
import socket
import ssl
import struct
import threading


class Cut(Exception):
    """Raised by a hook: close both connections now."""


def _parse_frame(buf):
    """(fin, opcode, payload, bytes used) of the first whole frame in buf,
    or None if it is not all there yet."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    n, pos = b1 & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = struct.unpack(">H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = struct.unpack(">Q", buf[2:10])[0], 10
    if n > 1 << 22:
        raise ConnectionError("frame too large for the test proxy")
    mask = None
    if b1 & 0x80:
        if len(buf) < pos + 4:
            return None
        mask, pos = buf[pos:pos + 4], pos + 4
    if len(buf) < pos + n:
        return None
    data = buf[pos:pos + n]
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return bool(b0 & 0x80), b0 & 0x0F, data, pos + n


def _write_frame(sock, opcode, data, masked):
    head = bytes([0x80 | opcode])
    mbit = 0x80 if masked else 0
    n = len(data)
    if n < 126:
        head += bytes([mbit | n])
    elif n < 1 << 16:
        head += bytes([mbit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack(">Q", n)
    if masked:
        mask = os.urandom(4)
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        head += mask
    sock.sendall(head + data)


def _read_head(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
        if len(buf) > 65536:
            raise ConnectionError("head too long")
    return buf


def msg_type(message):
    try:
        return json.loads(message).get("t")
    except (ValueError, AttributeError):
        return None


class Mitm:
    def __init__(self, server, hook=None, http_hook=None):
        self.server = server
        self.hook = hook or (lambda direction, message: [message])
        self.http_hook = http_hook or (lambda direction, head, data: None)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.ctx.load_cert_chain(server.cert, server.dir / "tls-key.pem")
        self.up = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.up.check_hostname = False
        self.up.verify_mode = ssl.CERT_NONE
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(32)
        self.port = self.lsock.getsockname()[1]
        self.seen = []  # (direction, message) of every WebSocket message
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def close(self):
        self.closed = True
        self.lsock.close()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, raw):
        """One thread per connection (an SSL object must not be read and
        written from two threads at once)."""
        socks = []
        try:
            c = self.ctx.wrap_socket(raw, server_side=True)
            socks.append(c)
            u = self.up.wrap_socket(socket.create_connection(
                ("127.0.0.1", self.server.port), timeout=60))
            socks.append(u)
            head = _read_head(c)
            ws = b"upgrade: websocket" in head.lower()
            if not ws:
                self.http_hook("c2s", head, head)
            u.sendall(head)
            if ws:
                c.sendall(_read_head(u))
            self._relay(c, u, ws, head)
        except (OSError, ConnectionError, ssl.SSLError, Cut):
            pass
        finally:
            for s in socks:
                try:
                    s.close()
                except OSError:
                    pass

    @staticmethod
    def _drain(s):
        """What the socket has now (b"" at EOF, None if nothing yet)."""
        out = b""
        s.settimeout(0)
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    return out if out else b""
                out += data
                if not s.pending():
                    break
        except (ssl.SSLWantReadError, BlockingIOError, socket.timeout):
            pass
        finally:
            s.settimeout(60)
        return out if out else None

    def _relay(self, c, u, ws, head):
        peer = {c: u, u: c}
        direction = {c: "c2s", u: "s2c"}
        state = {c: [b"", [], None], u: [b"", [], None]}  # buf, parts, op
        while True:
            ready = [s for s in (c, u) if s.pending()]
            if not ready:
                ready, _, _ = select.select([c, u], [], [], 120)
                if not ready:
                    return
            for s in ready:
                data = self._drain(s)
                if data is None:
                    continue
                if data == b"":
                    return
                if not ws:
                    self.http_hook(direction[s], head, data)
                    peer[s].sendall(data)
                    continue
                st = state[s]
                st[0] += data
                self._frames(st, direction[s], peer[s])

    def _frames(self, st, direction, dst):
        masked_out = direction == "c2s"
        while True:
            frame = _parse_frame(st[0])
            if frame is None:
                return
            fin, op, data, used = frame
            st[0] = st[0][used:]
            if op >= 0x8:  # control: close, ping, pong
                _write_frame(dst, op, data, masked_out)
                if op == 0x8:
                    raise Cut()
                continue
            if op != 0:
                st[2] = op
            st[1].append(data)
            if not fin:
                continue
            message = b"".join(st[1])
            st[1] = []
            self.seen.append((direction, message))
            for out in self.hook(direction, message):
                _write_frame(dst, st[2], out, masked_out)


def point_token_at(tok, url):
    """Rewrites the token's server_url (same pin: the proxy presents the
    server's own certificate)."""
    conf = tok.conf_path()
    lines = [f"server_url = {url}" if ln.startswith("server_url") else ln
             for ln in conf.read_text().splitlines()]
    conf.write_text("\n".join(lines) + "\n")
