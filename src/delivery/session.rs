//! One SMTP session on a socket rebuy owns (RFC 5321): the greeting, EHLO, STARTTLS or TLS
//! from the first byte, AUTH, and mail transactions. When the server offers PIPELINING
//! (RFC 2920), MAIL, RCPT and DATA go out in one write, and can follow the previous message's
//! data in the same write (`queue_*`, then `flush`), so a steady stream of messages costs one
//! round trip each instead of four. Every failure says at which stage it
//! happened, because that decides whether the server may have accepted the message.

use base64::Engine as _;
use lettre::address::Envelope;
use rustls_pki_types::ServerName;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};

/// A reply longer than this is a broken or hostile server, not an answer.
const MAX_REPLY: usize = 64 * 1024;
/// The longest reply line read (RFC 5321 allows 512 octets; servers write longer texts).
const MAX_LINE: u64 = 8 * 1024;

/// A byte stream a session can run on: plain TCP or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A server reply: its code and its text (the lines joined).
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    fn is(&self, class: u16) -> bool {
        self.code / 100 == class
    }
}

/// A failed protocol step: the server's reply refusing it, or a network, TLS or protocol
/// failure.
#[derive(Debug)]
pub enum Fail {
    Reply {
        permanent: bool,
        code: String,
        text: String,
    },
    Network(String),
}

impl Fail {
    fn refused(r: &Reply) -> Self {
        Fail::Reply {
            permanent: r.is(5),
            code: r.code.to_string(),
            text: format!("{} {}", r.code, r.text),
        }
    }

    /// What went wrong, in words.
    pub fn text(&self) -> &str {
        match self {
            Fail::Reply { text, .. } | Fail::Network(text) => text,
        }
    }

    fn io(e: std::io::Error) -> Self {
        Fail::Network(format!("connection failed: {e}"))
    }
}

/// Where in the SMTP transaction a step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Opening the session (connect, greeting, EHLO, TLS, AUTH): about the server or the
    /// settings, never about a message.
    Connect,
    /// MAIL or DATA: nothing can have been accepted.
    Before,
    /// RCPT: a permanent refusal here is about the recipient's address (a hard bounce).
    Recipient,
    /// After the message data was written: the server may have accepted it.
    After,
}

/// What the server said it can do, from its EHLO reply.
#[derive(Debug, Default, Clone)]
struct Extensions {
    pipelining: bool,
    eight_bit_mime: bool,
    smtp_utf8: bool,
    starttls: bool,
    auth: Vec<String>,
}

impl Extensions {
    fn parse(ehlo: &Reply) -> Self {
        let mut ext = Extensions::default();
        for line in ehlo.text.lines().skip(1) {
            let mut words = line.split_whitespace();
            match words.next().map(str::to_ascii_uppercase).as_deref() {
                Some("PIPELINING") => ext.pipelining = true,
                Some("8BITMIME") => ext.eight_bit_mime = true,
                Some("SMTPUTF8") => ext.smtp_utf8 = true,
                Some("STARTTLS") => ext.starttls = true,
                Some("AUTH") => ext.auth = words.map(str::to_ascii_uppercase).collect(),
                _ => {}
            }
        }
        ext
    }
}

/// How to reach the server and who we are.
pub struct Dial<'a> {
    pub host: &'a str,
    pub port: u16,
    /// The name given in EHLO.
    pub hello: &'a str,
    pub tls: Option<&'a Arc<rustls::ClientConfig>>,
    /// STARTTLS (true) or TLS from the first byte (false), when `tls` is set.
    pub starttls: bool,
    pub credentials: Option<(&'a str, &'a str)>,
}

pub struct Session {
    io: BufStream<Box<dyn Io>>,
    ext: Extensions,
}

impl Session {
    /// Connects, reads the greeting, says EHLO, upgrades to TLS and authenticates as asked.
    /// Each await here is bounded by the caller's timeout.
    pub async fn open(dial: &Dial<'_>) -> Result<Self, Fail> {
        let tcp = tokio::net::TcpStream::connect((dial.host, dial.port))
            .await
            .map_err(|e| {
                Fail::Network(format!(
                    "cannot connect to {}:{}: {e}",
                    dial.host, dial.port
                ))
            })?;
        // Without this every small final write waits ~40 ms for a delayed ACK.
        tcp.set_nodelay(true).map_err(Fail::io)?;
        let mut stream: Box<dyn Io> = Box::new(tcp);
        if let (Some(tls), false) = (dial.tls, dial.starttls) {
            stream = handshake(stream, dial.host, tls).await?;
        }
        let mut session = Session {
            io: BufStream::new(stream),
            ext: Extensions::default(),
        };
        session.expect(2).await?;
        session.hello(dial.hello).await?;
        if let (Some(tls), true) = (dial.tls, dial.starttls) {
            if !session.ext.starttls {
                return Err(Fail::Network(
                    "the server does not offer STARTTLS, and smtp.tls requires it".into(),
                ));
            }
            session.command("STARTTLS").await?;
            session.expect(2).await?;
            let plain = std::mem::replace(
                &mut session.io,
                BufStream::new(Box::new(tokio::io::empty())),
            );
            session.io = BufStream::new(handshake(plain.into_inner(), dial.host, tls).await?);
            session.hello(dial.hello).await?;
        }
        if let Some((user, password)) = dial.credentials {
            session.authenticate(user, password).await?;
        }
        Ok(session)
    }

    async fn hello(&mut self, name: &str) -> Result<(), Fail> {
        self.command(&format!("EHLO {name}")).await?;
        let reply = self.read_reply().await?;
        if reply.is(2) {
            self.ext = Extensions::parse(&reply);
            return Ok(());
        }
        // A server that knows no ESMTP: plain HELO, no extensions.
        self.command(&format!("HELO {name}")).await?;
        self.expect(2).await?;
        self.ext = Extensions::default();
        Ok(())
    }

    async fn authenticate(&mut self, user: &str, password: &str) -> Result<(), Fail> {
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        if self.ext.auth.iter().any(|m| m == "PLAIN") {
            let token = b64(format!("\0{user}\0{password}").as_bytes());
            self.command(&format!("AUTH PLAIN {token}")).await?;
            return self.expect(2).await.map(drop);
        }
        if self.ext.auth.iter().any(|m| m == "LOGIN") {
            self.command("AUTH LOGIN").await?;
            self.expect(3).await?;
            self.command(&b64(user.as_bytes())).await?;
            self.expect(3).await?;
            self.command(&b64(password.as_bytes())).await?;
            return self.expect(2).await.map(drop);
        }
        Err(Fail::Reply {
            permanent: true,
            code: String::new(),
            text: format!(
                "the server offers no AUTH mechanism rebuy speaks (PLAIN, LOGIN); it offers: {}",
                if self.ext.auth.is_empty() {
                    "none".into()
                } else {
                    self.ext.auth.join(" ")
                }
            ),
        })
    }

    /// Whether the server takes commands in groups (RFC 2920).
    pub fn pipelining(&self) -> bool {
        self.ext.pipelining
    }

    /// Whether the envelope can go over this session: an address beyond ASCII needs a server
    /// that offers SMTPUTF8 (RFC 6531).
    pub fn can_carry(&self, envelope: &Envelope) -> bool {
        self.ext.smtp_utf8 || !needs_utf8(envelope)
    }

    /// MAIL, RCPT and DATA: in one write when the server pipelines, else one by one. Every
    /// reply is read, so the session stays in step whatever the server answered.
    pub async fn envelope(
        &mut self,
        envelope: &Envelope,
        eight_bit: bool,
    ) -> Result<(), (Stage, Fail)> {
        let commands = self.commands(envelope, eight_bit);
        if !self.ext.pipelining {
            for (stage, command) in &commands {
                self.command(command)
                    .await
                    .map_err(|e| (Stage::Before, e))?;
                let want = if command == "DATA" { 3 } else { 2 };
                self.expect(want).await.map_err(|e| (*stage, e))?;
            }
            return Ok(());
        }
        let sent = self
            .queue_envelope(envelope, eight_bit)
            .await
            .map_err(|e| (Stage::Before, e))?;
        self.flush().await.map_err(|e| (Stage::Before, e))?;
        self.envelope_replies(&sent).await
    }

    fn commands(&self, envelope: &Envelope, eight_bit: bool) -> Vec<(Stage, String)> {
        let mut params = String::new();
        if needs_utf8(envelope) && self.ext.smtp_utf8 {
            params.push_str(" SMTPUTF8");
        }
        if eight_bit && self.ext.eight_bit_mime {
            params.push_str(" BODY=8BITMIME");
        }
        let from = envelope.from().map(|a| a.to_string()).unwrap_or_default();
        let mut commands = vec![(Stage::Before, format!("MAIL FROM:<{from}>{params}"))];
        for to in envelope.to() {
            commands.push((Stage::Recipient, format!("RCPT TO:<{to}>")));
        }
        commands.push((Stage::Before, "DATA".to_string()));
        commands
    }

    /// Puts MAIL, RCPT and DATA in the write buffer (pipelining servers only); they go out
    /// with the next `flush`, behind whatever is already buffered.
    pub async fn queue_envelope(
        &mut self,
        envelope: &Envelope,
        eight_bit: bool,
    ) -> Result<Vec<Stage>, Fail> {
        let commands = self.commands(envelope, eight_bit);
        for (_, command) in &commands {
            self.write_line(command).await?;
        }
        Ok(commands.into_iter().map(|(stage, _)| stage).collect())
    }

    /// Reads the replies to a queued envelope: Ok when the server is ready for the data.
    pub async fn envelope_replies(&mut self, stages: &[Stage]) -> Result<(), (Stage, Fail)> {
        let before = |e| (Stage::Before, e);
        let mut first_refusal: Option<(Stage, Fail)> = None;
        let mut data_open = false;
        for (i, stage) in stages.iter().enumerate() {
            let reply = self.read_reply().await.map_err(before)?;
            let data = i + 1 == stages.len();
            let want = if data { 3 } else { 2 };
            if data {
                data_open = reply.is(3);
            }
            if !reply.is(want) && first_refusal.is_none() {
                first_refusal = Some((*stage, Fail::refused(&reply)));
            }
        }
        match first_refusal {
            None => Ok(()),
            Some(refusal) => {
                if data_open {
                    // The server opened DATA although it refused the sender or recipient
                    // (RFC 2920 says it must not): end it with no message, then give up.
                    self.write_line(".").await.map_err(before)?;
                    self.flush().await.map_err(before)?;
                    self.read_reply().await.map_err(before)?;
                }
                Err(refusal)
            }
        }
    }

    /// The message, dot-stuffed, then the final dot; the server's answer is its acceptance.
    pub async fn data(&mut self, message: &[u8]) -> Result<(), Fail> {
        self.queue_data(message).await?;
        self.flush().await?;
        self.final_reply().await
    }

    /// Puts the message, dot-stuffed, and the final dot in the write buffer.
    pub async fn queue_data(&mut self, message: &[u8]) -> Result<(), Fail> {
        let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
        stuff(message, &mut out);
        self.io.write_all(&out).await.map_err(Fail::io)
    }

    /// Sends everything buffered.
    pub async fn flush(&mut self) -> Result<(), Fail> {
        self.io.flush().await.map_err(Fail::io)
    }

    /// The server's answer to a message's data: its acceptance, or its refusal.
    pub async fn final_reply(&mut self) -> Result<(), Fail> {
        self.expect(2).await.map(drop)
    }

    /// Ends a refused transaction so the connection can carry the next one.
    pub async fn reset(&mut self) -> Result<(), Fail> {
        self.command("RSET").await?;
        self.expect(2).await.map(drop)
    }

    /// Whether the server still answers (NOOP).
    pub async fn alive(&mut self) -> bool {
        self.command("NOOP").await.is_ok() && self.expect(2).await.is_ok()
    }

    async fn command(&mut self, line: &str) -> Result<(), Fail> {
        self.write_line(line).await?;
        self.io.flush().await.map_err(Fail::io)
    }

    async fn write_line(&mut self, line: &str) -> Result<(), Fail> {
        self.io.write_all(line.as_bytes()).await.map_err(Fail::io)?;
        self.io.write_all(b"\r\n").await.map_err(Fail::io)
    }

    /// Reads a reply and checks its class (2 for 2xx, 3 for 3xx).
    async fn expect(&mut self, class: u16) -> Result<Reply, Fail> {
        let reply = self.read_reply().await?;
        if reply.is(class) {
            Ok(reply)
        } else {
            Err(Fail::refused(&reply))
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, Fail> {
        let mut text = String::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            // A line is read through a bound: a hostile server cannot grow it without end.
            let n = (&mut self.io)
                .take(MAX_LINE + 1)
                .read_until(b'\n', &mut line)
                .await
                .map_err(Fail::io)?;
            if n == 0 {
                return Err(Fail::Network("the server closed the connection".into()));
            }
            if line.last() != Some(&b'\n') && n as u64 > MAX_LINE {
                return Err(Fail::Network(format!(
                    "the server sent a reply line longer than {MAX_LINE} bytes"
                )));
            }
            let (code, more, line_text) = parse_reply_line(&line).map_err(Fail::Network)?;
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&line_text);
            if text.len() > MAX_REPLY {
                return Err(Fail::Network("the server's reply is too long".into()));
            }
            if !more {
                return Ok(Reply { code, text });
            }
        }
    }
}

/// Whether an address of the envelope is beyond ASCII.
fn needs_utf8(envelope: &Envelope) -> bool {
    envelope
        .to()
        .iter()
        .chain(envelope.from())
        .any(|a| !AsRef::<str>::as_ref(a).is_ascii())
}

/// One line of a server reply (RFC 5321 4.2), line break included or not: its code (200 to
/// 599), whether more lines of the same reply follow (`250-` rather than `250 `), and its text.
/// Bytes that are not UTF-8 are replaced, not refused: the text is for people.
pub fn parse_reply_line(line: &[u8]) -> Result<(u16, bool, String), String> {
    let s = String::from_utf8_lossy(line);
    let s = s.trim_end_matches(['\r', '\n']);
    let code = s.get(..3).and_then(|c| c.parse::<u16>().ok());
    let Some(code) = code.filter(|c| (200..600).contains(c)) else {
        return Err(format!("the server's reply makes no sense: {s:?}"));
    };
    let more = s.as_bytes().get(3) == Some(&b'-');
    Ok((code, more, s.get(4..).unwrap_or_default().to_string()))
}

async fn handshake(
    stream: Box<dyn Io>,
    host: &str,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Box<dyn Io>, Fail> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| Fail::Network(format!("{host} is not a valid TLS server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let stream = connector
        .connect(name, stream)
        .await
        .map_err(|e| Fail::Network(format!("TLS handshake with {host} failed: {e}")))?;
    Ok(Box::new(stream))
}

/// Dot-stuffs a message (a line starting with "." gets another), makes sure it ends with a
/// line break, and appends the final ".".
fn stuff(message: &[u8], out: &mut Vec<u8>) {
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// The TLS settings: the Mozilla roots, plus the certificates in `ca_file` if one is set
/// (for a relay with a private CA).
pub fn tls_config(ca_file: Option<&std::path::Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| anyhow::anyhow!("cannot read smtp.ca_file {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| anyhow::anyhow!("smtp.ca_file {}: {e}", path.display()))?;
            roots.add(cert).map_err(|e| {
                anyhow::anyhow!(
                    "smtp.ca_file {}: not a usable CA certificate: {e}",
                    path.display()
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuffed(s: &str) -> String {
        let mut out = Vec::new();
        stuff(s.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_starting_with_a_dot_get_another_and_the_message_ends_with_a_lone_dot() {
        assert_eq!(stuffed("a\r\n.b\r\n..c\r\n"), "a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(stuffed(".\r\nx"), "..\r\nx\r\n.\r\n");
        assert_eq!(stuffed("x.y\r\n"), "x.y\r\n.\r\n");
    }

    #[test]
    fn a_reply_line_gives_its_code_whether_more_follow_and_its_text() {
        assert_eq!(
            parse_reply_line(b"250-smtp.example\r\n"),
            Ok((250, true, "smtp.example".into()))
        );
        assert_eq!(
            parse_reply_line(b"550 5.1.1 no such user\r\n"),
            Ok((550, false, "5.1.1 no such user".into()))
        );
        assert_eq!(parse_reply_line(b"354"), Ok((354, false, String::new())));
        assert!(parse_reply_line(b"199 too low\r\n").is_err());
        assert!(parse_reply_line(b"hello\r\n").is_err());
        assert!(parse_reply_line(b"").is_err());
    }

    #[test]
    fn the_ehlo_reply_tells_which_extensions_the_server_offers() {
        let reply = Reply {
            code: 250,
            text: "mx.example\nPIPELINING\nSIZE 10240000\nauth login PLAIN\n8BITMIME\nSTARTTLS"
                .into(),
        };
        let ext = Extensions::parse(&reply);
        assert!(ext.pipelining && ext.eight_bit_mime && ext.starttls && !ext.smtp_utf8);
        assert_eq!(ext.auth, ["LOGIN", "PLAIN"]);
        // The first line is the server's name, never an extension.
        let named = Reply {
            code: 250,
            text: "PIPELINING".into(),
        };
        assert!(!Extensions::parse(&named).pipelining);
    }
}
