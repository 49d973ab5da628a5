//! A minimal ubus client: just enough to call one method of one object, as
//! `ubus call OBJECT METHOD '{"k":"v",...}'` does with string arguments, written from the
//! message layout of OpenWrt's ubus (`ubusmsg.h`) and libubox (`blob.h`, `blobmsg.h`).
//!
//! A message is an 8-byte header (version 0, type, sequence number as a big-endian u16,
//! peer as a big-endian u32) and one blob attribute holding the message's attributes. A
//! blob attribute is a big-endian u32 (bit 31: "extended", a blobmsg with a name; bits
//! 24-30: the id or type; bits 0-23: the length including these 4 bytes) and its data,
//! padded with zeros to 4 bytes; the length does not count the padding, the container's
//! does. A blobmsg's data starts with its name: a big-endian u16 length, the name, a NUL,
//! zeros to 4 bytes; a string value ends with a NUL.
//!
//! The conversation: ubusd greets first (HELLO, its peer field our client id); a LOOKUP
//! of the object's path is answered by DATA (with the object's id) and a STATUS; an
//! INVOKE of the method on that id is answered by DATA (the method's reply, ignored
//! here) and a STATUS, whose code is the call's result. Pure encoding and parsing, and
//! one blocking exchange over a unix socket with a deadline.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub const MSG_HELLO: u8 = 0;
pub const MSG_STATUS: u8 = 1;
pub const MSG_DATA: u8 = 2;
pub const MSG_LOOKUP: u8 = 4;
pub const MSG_INVOKE: u8 = 5;

pub const ATTR_STATUS: u8 = 1;
pub const ATTR_OBJPATH: u8 = 2;
pub const ATTR_OBJID: u8 = 3;
pub const ATTR_METHOD: u8 = 4;
pub const ATTR_DATA: u8 = 7;

const BLOBMSG_TYPE_STRING: u8 = 3;
const BLOB_EXTENDED: u32 = 0x8000_0000;
const BLOB_LEN_MASK: u32 = 0x00ff_ffff;

/// The largest message read back: the replies here are a few dozen bytes; ubusd's own
/// limit is 1 MiB.
const MAX_REPLY: usize = 64 * 1024;

/// ubusd's socket today, and before 2019 (it moved into a directory of its own).
pub const SOCKETS: [&str; 2] = ["/var/run/ubus/ubus.sock", "/var/run/ubus.sock"];

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Appends one blob attribute: header, `data`, zero padding.
fn put_attr(out: &mut Vec<u8>, id_bits: u32, data: &[u8]) {
    let len = 4 + data.len() as u32;
    out.extend_from_slice(&(id_bits | (len & BLOB_LEN_MASK)).to_be_bytes());
    out.extend_from_slice(data);
    out.resize(pad4(out.len()), 0);
}

fn plain(id: u8) -> u32 {
    u32::from(id) << 24
}

/// A blob string (NUL-terminated), as `blob_put_string`.
fn put_string(out: &mut Vec<u8>, id: u8, s: &str) {
    let mut data = s.as_bytes().to_vec();
    data.push(0);
    put_attr(out, plain(id), &data);
}

/// A named blobmsg string, as `blobmsg_add_string`.
fn put_blobmsg_string(out: &mut Vec<u8>, name: &str, value: &str) {
    let mut data = (name.len() as u16).to_be_bytes().to_vec();
    data.extend_from_slice(name.as_bytes());
    data.push(0);
    data.resize(pad4(data.len()), 0);
    data.extend_from_slice(value.as_bytes());
    data.push(0);
    put_attr(out, BLOB_EXTENDED | plain(BLOBMSG_TYPE_STRING), &data);
}

/// A whole message: header, then the container attribute around `attrs`.
fn message(kind: u8, seq: u16, peer: u32, attrs: &[u8]) -> Vec<u8> {
    let mut out = vec![0, kind];
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&peer.to_be_bytes());
    put_attr(&mut out, plain(0), attrs);
    out
}

/// `LOOKUP` of the object at `path`.
pub fn lookup(seq: u16, path: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    put_string(&mut attrs, ATTR_OBJPATH, path);
    message(MSG_LOOKUP, seq, 0, &attrs)
}

/// `INVOKE` of `method` on object `id`, with string arguments.
pub fn invoke(seq: u16, id: u32, method: &str, args: &[(&str, &str)]) -> Vec<u8> {
    let mut table = Vec::new();
    for (name, value) in args {
        put_blobmsg_string(&mut table, name, value);
    }
    let mut attrs = Vec::new();
    put_attr(&mut attrs, plain(ATTR_OBJID), &id.to_be_bytes());
    put_string(&mut attrs, ATTR_METHOD, method);
    put_attr(&mut attrs, plain(ATTR_DATA), &table);
    message(MSG_INVOKE, seq, id, &attrs)
}

/// One message read back: its header and its attributes (id, data without padding).
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: u8,
    pub seq: u16,
    pub peer: u32,
    pub attrs: Vec<(u8, Vec<u8>)>,
}

impl Message {
    fn attr(&self, id: u8) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, d)| d.as_slice())
    }

    /// A big-endian u32 attribute (STATUS, OBJID).
    pub fn u32(&self, id: u8) -> Option<u32> {
        Some(u32::from_be_bytes(
            self.attr(id)?.get(..4)?.try_into().ok()?,
        ))
    }

    /// A NUL-terminated string attribute (OBJPATH, METHOD).
    pub fn string(&self, id: u8) -> Option<&str> {
        let data = self.attr(id)?;
        std::str::from_utf8(&data[..data.iter().position(|&b| b == 0)?]).ok()
    }
}

/// The attributes inside a container's data (`bytes`): each header, data, padding.
pub fn parse_attrs(mut bytes: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, String> {
    let mut attrs = Vec::new();
    while !bytes.is_empty() {
        let head = bytes.get(..4).ok_or("ubus: a truncated attribute header")?;
        let word = u32::from_be_bytes(head.try_into().unwrap_or_default());
        let len = (word & BLOB_LEN_MASK) as usize;
        if len < 4 || len > bytes.len() {
            return Err(format!(
                "ubus: an attribute of length {len} in {} bytes",
                bytes.len()
            ));
        }
        attrs.push((((word >> 24) & 0x7f) as u8, bytes[4..len].to_vec()));
        bytes = &bytes[pad4(len).min(bytes.len())..];
    }
    Ok(attrs)
}

/// Splits one message off the front of `bytes`: `Ok(None)` while it is incomplete.
pub fn parse_message(bytes: &[u8]) -> Result<Option<(Message, usize)>, String> {
    if bytes.len() < 12 {
        return Ok(None);
    }
    if bytes[0] != 0 {
        return Err(format!("ubus: message version {} (0 expected)", bytes[0]));
    }
    let word = u32::from_be_bytes(bytes[8..12].try_into().unwrap_or_default());
    let len = (word & BLOB_LEN_MASK) as usize;
    if !(4..=MAX_REPLY).contains(&len) {
        return Err(format!("ubus: a message of {len} bytes"));
    }
    if bytes.len() < 8 + len {
        return Ok(None);
    }
    let message = Message {
        kind: bytes[1],
        seq: u16::from_be_bytes([bytes[2], bytes[3]]),
        peer: u32::from_be_bytes(bytes[4..8].try_into().unwrap_or_default()),
        attrs: parse_attrs(&bytes[12..8 + len])?,
    };
    Ok(Some((message, 8 + len)))
}

/// A connection to ubusd with a deadline for everything said on it.
struct Conn {
    stream: UnixStream,
    buffered: Vec<u8>,
    deadline: Instant,
}

impl Conn {
    fn left(&self) -> Result<Duration, String> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("ubus: no answer in time".into());
        }
        Ok(left)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let left = self.left()?;
        self.stream
            .set_write_timeout(Some(left))
            .and_then(|()| self.stream.write_all(bytes))
            .map_err(|e| format!("ubus: {e}"))
    }

    fn next(&mut self) -> Result<Message, String> {
        // Bounded: each pass reads at least one byte before the deadline or fails.
        loop {
            if let Some((message, used)) = parse_message(&self.buffered)? {
                self.buffered.drain(..used);
                return Ok(message);
            }
            let left = self.left()?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| format!("ubus: {e}"))?;
            let mut chunk = [0u8; 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("ubus: ubusd closed the connection".into()),
                Ok(n) => self.buffered.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err("ubus: no answer in time".into());
                }
                Err(e) => return Err(format!("ubus: {e}")),
            }
        }
    }

    /// The STATUS answering `seq`, the DATA before it handed to `on_data`.
    fn status_of(&mut self, seq: u16, on_data: &mut dyn FnMut(&Message)) -> Result<u32, String> {
        // Bounded by the deadline (each `next` waits only what is left of it).
        loop {
            let m = self.next()?;
            if m.seq != seq {
                continue;
            }
            match m.kind {
                MSG_DATA => on_data(&m),
                MSG_STATUS => {
                    return m
                        .u32(ATTR_STATUS)
                        .ok_or_else(|| "ubus: a status message without a status".into());
                }
                _ => {}
            }
        }
    }
}

/// ubus's status codes, for messages (`ubusmsg.h`).
fn status_name(code: u32) -> String {
    let name = match code {
        1 => "invalid command",
        2 => "invalid argument",
        3 => "method not found",
        4 => "not found",
        5 => "no data",
        6 => "permission denied",
        7 => "timeout",
        8 => "not supported",
        _ => return format!("error {code}"),
    };
    name.to_string()
}

/// `ubus call OBJECT METHOD ARGS` over the socket at `socket`, all of it within `timeout`.
pub fn call(
    socket: &Path,
    object: &str,
    method: &str,
    args: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), String> {
    let stream =
        UnixStream::connect(socket).map_err(|e| format!("ubus: {}: {e}", socket.display()))?;
    let mut conn = Conn {
        stream,
        buffered: Vec::new(),
        deadline: Instant::now() + timeout,
    };
    let hello = conn.next()?;
    if hello.kind != MSG_HELLO {
        return Err(format!(
            "ubus: message type {} before the greeting",
            hello.kind
        ));
    }
    conn.send(&lookup(1, object))?;
    let mut id = None;
    let status = conn.status_of(1, &mut |m| {
        if m.kind == MSG_DATA && m.string(ATTR_OBJPATH) == Some(object) {
            id = m.u32(ATTR_OBJID);
        }
    })?;
    let id = match (status, id) {
        (0, Some(id)) => id,
        (4, _) | (0, None) => {
            return Err(format!("ubus: no object `{object}` (is procd running?)"));
        }
        (code, _) => {
            return Err(format!(
                "ubus: looking up `{object}`: {}",
                status_name(code)
            ));
        }
    };
    conn.send(&invoke(2, id, method, args))?;
    match conn.status_of(2, &mut |_| {})? {
        0 => Ok(()),
        code => Err(format!("ubus: {object} {method}: {}", status_name(code))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes `ubus call service watchdog '{"name":"tunnel-a","instance":"main"}'`
    /// sends, spelled out from the layout in this module's comment.
    #[test]
    fn invoke_bytes_follow_the_layout() {
        let got = invoke(
            2,
            0x1234_5678,
            "watchdog",
            &[("name", "tunnel-a"), ("instance", "main")],
        );
        let mut want: Vec<u8> = vec![
            0, MSG_INVOKE, 0, 2, // version, type, seq (BE)
            0x12, 0x34, 0x56, 0x78, // peer: the object (BE)
        ];
        // The container: id 0, length 4 + 8 (OBJID) + 16 (METHOD) + 52 (DATA).
        want.extend_from_slice(&[0, 0, 0, 80]);
        want.extend_from_slice(&[ATTR_OBJID, 0, 0, 8, 0x12, 0x34, 0x56, 0x78]);
        // "watchdog\0" is 9 bytes: length 13, padded to 16.
        want.extend_from_slice(&[ATTR_METHOD, 0, 0, 13]);
        want.extend_from_slice(b"watchdog\0\0\0\0");
        // DATA: its header and two blobmsg strings of 24 bytes each.
        want.extend_from_slice(&[ATTR_DATA, 0, 0, 52]);
        // name: 2 + 4 + 1 = 7 → 8 bytes of name header, "tunnel-a\0" 9: length 21, pad 24.
        want.extend_from_slice(&[0x83, 0, 0, 21, 0, 4]);
        want.extend_from_slice(b"name\0\0tunnel-a\0\0\0\0");
        // instance: 2 + 8 + 1 = 11 → 12, "main\0" 5: length 21, pad 24.
        want.extend_from_slice(&[0x83, 0, 0, 21, 0, 8]);
        want.extend_from_slice(b"instance\0\0main\0\0\0\0");
        assert_eq!(got.len(), 8 + 80);
        assert_eq!(got, want);
    }

    #[test]
    fn lookup_bytes_follow_the_layout() {
        let mut want: Vec<u8> = vec![0, MSG_LOOKUP, 0, 1, 0, 0, 0, 0, 0, 0, 0, 16];
        want.extend_from_slice(&[ATTR_OBJPATH, 0, 0, 12]);
        want.extend_from_slice(b"service\0");
        assert_eq!(lookup(1, "service"), want);
    }

    #[test]
    fn replies_parse_and_bad_ones_are_refused() {
        // A STATUS 0 for seq 2 from object 7, then half of the next message.
        let mut bytes = vec![0, MSG_STATUS, 0, 2, 0, 0, 0, 7, 0, 0, 0, 12];
        bytes.extend_from_slice(&[ATTR_STATUS, 0, 0, 8, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0, MSG_DATA, 0]);
        let (m, used) = parse_message(&bytes).unwrap().unwrap();
        assert_eq!(used, 20);
        assert_eq!((m.kind, m.seq, m.peer), (MSG_STATUS, 2, 7));
        assert_eq!(m.u32(ATTR_STATUS), Some(0));
        assert_eq!(parse_message(&bytes[used..]).unwrap(), None);
        let mut bad = bytes.clone();
        bad[0] = 1;
        assert!(parse_message(&bad).unwrap_err().contains("version 1"));
        let mut bad = bytes.clone();
        bad[15] = 200;
        assert!(parse_message(&bad).unwrap_err().contains("length 200"));
        let huge = [0, MSG_DATA, 0, 1, 0, 0, 0, 0, 0, 0xff, 0, 0];
        assert!(parse_message(&huge).unwrap_err().contains("bytes"));
    }
}
