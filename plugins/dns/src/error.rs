//! hickory's errors, sorted into "the name has no records" and "we do not know".

use autocluster_plugin::{Error, ErrorKind};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, ResolveErrorKind};

use crate::config::RecordKind;

/// What a failed lookup means.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server answered, and there is nothing: `NXDOMAIN`, or `NOERROR` with no records.
    Empty(&'static str),
    /// No usable answer (timeout, SERVFAIL, REFUSED, a network error): the candidates are
    /// unknown, not gone.
    Error(Error),
}

/// Sorts a resolver error; the error carries the name, the type and the servers.
pub(crate) fn classify(e: ResolveError, name: &str, kind: RecordKind, servers: &str) -> Failure {
    let proto = match e.kind() {
        ResolveErrorKind::Proto(p) => Some(p.kind()),
        _ => None,
    };
    let (error_kind, what, keep_source) = match proto {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => match *response_code {
            ResponseCode::NXDomain => return Failure::Empty("NXDOMAIN"),
            ResponseCode::NoError => return Failure::Empty("NOERROR"),
            // The code says it all; hickory's text for it ("no records found") would mislead.
            code => (
                ErrorKind::Unavailable,
                format!("the server answered {}", mnemonic(code)),
                false,
            ),
        },
        Some(ProtoErrorKind::Timeout) => (ErrorKind::Timeout, "no answer in time".into(), true),
        Some(ProtoErrorKind::NoConnections) => (
            ErrorKind::Unavailable,
            "no server could be reached".into(),
            true,
        ),
        _ => (ErrorKind::Unavailable, e.to_string(), false),
    };
    let error = Error::new(
        error_kind,
        format!("lookup of {name} {kind} from {servers} failed: {what}"),
    )
    .with_backend(crate::NAME)
    .with_operation("snapshot")
    .with_key(name.to_string())
    .with_endpoint(servers.to_string());
    Failure::Error(if keep_source {
        error.with_source(e)
    } else {
        error
    })
}

fn mnemonic(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        other => format!("{other} ({})", u16::from(other)),
    }
}
