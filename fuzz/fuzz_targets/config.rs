//! Fuzzes the configuration parser: the input is split on NUL bytes into up to six
//! raw values, one per variable (a missing piece is an unset variable), read with
//! Config::from_lookup; each piece also goes through every value parser, and every
//! warning and summary is formatted. Nothing may panic, and a value must be refused
//! by from_lookup exactly when its own parser refuses it.
#![no_main]

use std::fmt::Write;

use keepalive_config::{Config, Var, count, log_level, mode, seconds, user_timeout};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut pieces = data.split(|&b| b == 0);
    let values: Vec<Option<&[u8]>> = Var::ALL.iter().map(|_| pieces.next()).collect();

    let parsed = Config::from_lookup(|var| {
        let index = Var::ALL
            .iter()
            .position(|v| *v == var)
            .expect("a known variable");
        values[index]
    });
    let mut text = String::new();
    write!(text, "{}", parsed.config).unwrap();
    for rejected in parsed.rejected() {
        text.clear();
        write!(text, "{rejected}").unwrap();
        assert!(!text.contains('\n'), "a warning spans lines: {text:?}");
    }

    for (var, value) in Var::ALL.iter().zip(&values) {
        let Some(raw) = value else { continue };
        let _ = (
            seconds(raw),
            count(raw),
            user_timeout(raw),
            mode(raw),
            log_level(raw),
        );
        let mut alone = Config::DEFAULT;
        let refused_alone = alone.set(*var, raw).is_err();
        assert_eq!(
            parsed.rejected().any(|r| r.var == *var),
            refused_alone,
            "{var:?}"
        );
    }
});
