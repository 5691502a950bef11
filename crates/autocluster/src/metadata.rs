//! The member's own data: labels (`zone = eu-1`) and named endpoints (`mqtt =
//! 10.0.0.5:1883`), and the checks every way of setting them goes through (the
//! configuration's `node.labels.<key>` and `node.advertise.<name>`, [`ClusterBuilder`]
//! and [`Cluster::update_metadata`]).
//!
//! [`ClusterBuilder`]: crate::ClusterBuilder
//! [`Cluster::update_metadata`]: crate::Cluster::update_metadata

use autocluster_plugin::{Error, ErrorKind, Metadata};

/// The longest label key or endpoint name, in bytes.
pub const MAX_NAME_LEN: usize = 63;
/// The longest label value, in bytes.
pub const MAX_LABEL_VALUE_LEN: usize = 256;
/// The longest endpoint address (`host:port`), in bytes.
pub const MAX_ENDPOINT_LEN: usize = 261;

/// The form a label key or an endpoint name takes, as error messages say it.
pub const NAME_FORM: &str =
    "1 to 63 characters from a-z, 0-9, '_' and '-', starting with a letter or digit";
/// The form a label value takes.
pub const LABEL_VALUE_FORM: &str = "at most 256 bytes of text without control characters";
/// The form an endpoint takes.
pub const ENDPOINT_FORM: &str =
    "host:port, the host a name, an IPv4 address or a bracketed IPv6 address, such as 10.0.0.5:1883 or [::1]:50051";

/// Checks a label key or an endpoint name; `Err` says what was expected.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() > MAX_NAME_LEN || !first_ok || !name.chars().all(ok_char) {
        return Err(format!("expected a name of {NAME_FORM}"));
    }
    Ok(())
}

/// Checks a label value; `Err` says what was expected.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_LABEL_VALUE_LEN {
        return Err(format!(
            "the value is {} bytes; expected {LABEL_VALUE_FORM}",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "the value has a control character; expected {LABEL_VALUE_FORM}"
        ));
    }
    Ok(())
}

/// Checks an endpoint address, `host:port`; `Err` says what was expected.
pub fn check_endpoint(addr: &str) -> Result<(), String> {
    let expected = || format!("expected {ENDPOINT_FORM}");
    if addr.len() > MAX_ENDPOINT_LEN {
        return Err(expected());
    }
    let (host, port) = addr.rsplit_once(':').ok_or_else(expected)?;
    if !matches!(port.parse::<u16>(), Ok(1..)) || port.starts_with('+') {
        return Err(format!(
            "the port {port:?} is not 1 to 65535; {}",
            expected()
        ));
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        is_hostname(host)
    };
    if !host_ok {
        return Err(expected());
    }
    Ok(())
}

/// A DNS name or an IPv4 address: dot-separated labels of letters, digits and '-', none
/// empty, none starting or ending with '-'.
fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// The longest version, in bytes.
pub const MAX_VERSION_LEN: usize = 128;

/// Checks a version: at most 128 bytes without control characters.
pub fn check_version(version: &str) -> Result<(), Error> {
    if version.len() > MAX_VERSION_LEN || version.chars().any(char::is_control) {
        let shown = autocluster_plugin::log::Escaped::new(version).max(80);
        return Err(config_error(format!(
            "version {shown}: expected at most {MAX_VERSION_LEN} bytes of text without control characters"
        )));
    }
    Ok(())
}

/// Checks the version, every label and every endpoint of `meta`, as an error of kind `Config` naming the
/// offending one.
pub fn check(meta: &Metadata) -> Result<(), Error> {
    if let Some(v) = &meta.version {
        check_version(v)?;
    }
    for (k, v) in &meta.labels {
        check_label(k, v)?;
    }
    for (name, addr) in &meta.endpoints {
        check_named_endpoint(name, addr)?;
    }
    Ok(())
}

/// Checks one label, as an error naming it.
pub fn check_label(key: &str, value: &str) -> Result<(), Error> {
    let shown = autocluster_plugin::log::Escaped::new(key).max(80);
    check_name(key)
        .map_err(|why| config_error(format!("label key {shown}: {why}")))
        .and_then(|()| {
            check_label_value(value).map_err(|why| config_error(format!("label {shown}: {why}")))
        })
}

/// Checks one named endpoint, as an error naming it.
pub fn check_named_endpoint(name: &str, addr: &str) -> Result<(), Error> {
    let shown = autocluster_plugin::log::Escaped::new(name).max(80);
    check_name(name)
        .map_err(|why| config_error(format!("endpoint name {shown}: {why}")))
        .and_then(|()| {
            check_endpoint(addr).map_err(|why| {
                let addr = autocluster_plugin::log::Escaped::new(addr).max(80);
                config_error(format!("endpoint {shown} = {addr}: {why}"))
            })
        })
}

fn config_error(message: String) -> Error {
    Error::new(ErrorKind::Config, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["zone", "a", "mqtt-tls", "grpc_2", "0day"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "Zone",
            "-x",
            "_x",
            "a.b",
            "a b",
            "zone\n",
            long.as_str(),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values() {
        assert!(check_label_value("eu-1").is_ok());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("a b/c=d é").is_ok());
        assert!(check_label_value("a\x1b[31m").is_err());
        assert!(check_label_value(&"v".repeat(257)).is_err());
    }

    #[test]
    fn endpoints() {
        for ok in [
            "10.0.0.5:1883",
            "broker-1.example.com:8883",
            "[::1]:50051",
            "localhost:1",
        ] {
            assert!(check_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.5",
            "10.0.0.5:0",
            "10.0.0.5:65536",
            ":1883",
            "::1:50051",
            "[::1]",
            "a b:1",
            "host:+1",
            "-a:1",
            "http://h:1",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }
}
