//! The `DFLOCKD_*` environment rules that `dflockd` and `dflockctl` share, so one variable means the
//! same to both: an empty variable counts as unset (spec §17.1), and a `DFLOCKD_*` variable that neither
//! program reads is reported with the closest name that one of them does read.
//!
//! Nothing here reads the process environment itself; callers pass lookups and names in, which keeps the
//! rules testable without touching global state.

use std::ffi::OsString;

use clap::Command;

/// The prefix of every variable either program reads.
pub const PREFIX: &str = "DFLOCKD_";

/// The variables `dflockctl` reads. The server accepts them silently, since an operator's shell often has
/// both programs' settings; a test in `dflockctl` keeps this list equal to the variables its command line
/// declares.
pub const DFLOCKCTL_VARIABLES: &[&str] = &[
    "DFLOCKD_SERVERS",
    "DFLOCKD_TLS_CA",
    "DFLOCKD_TLS",
    "DFLOCKD_TLS_SERVER_NAME",
    "DFLOCKD_CONNECT_TIMEOUT",
    "DFLOCKD_IO_TIMEOUT",
    "DFLOCKD_AUTH_TOKEN",
    "DFLOCKD_AUTH_TOKEN_FILE",
];

/// The variables of the reference server's HTTP API start with this; they are never read here (there is
/// no HTTP API) but belong to deployments written for the reference, so they are not reported.
const HTTP_PREFIX: &str = "DFLOCKD_HTTP_";

/// A suggestion is only made when at most this many single-character edits separate a name from it (or a
/// third of the name's length, if that is more): further away, "did you mean" would be a guess.
const MIN_SUGGESTION_DISTANCE: usize = 3;

/// `command` with the `env` binding removed from every argument whose variable `lookup` finds empty, so
/// that clap treats that variable as unset instead of parsing `""` (which fails for switches and numbers,
/// and would be taken as a value for strings).
///
/// Global arguments must still be on the top-level command, as they are before clap builds it.
pub fn ignore_empty_variables(
    command: Command,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Command {
    command.mut_args(|arg| {
        let empty = arg
            .get_env()
            .and_then(|name| name.to_str())
            .and_then(&lookup)
            .is_some_and(|value| value.is_empty());
        if empty { arg.env(None) } else { arg }
    })
}

/// One warning for each name in `present` that starts with [`PREFIX`] but is neither in `known` nor an
/// HTTP-API variable, naming the closest known variable when there is one.
pub fn unknown_variable_warnings<'a>(
    present: impl IntoIterator<Item = &'a str>,
    known: &[&str],
) -> Vec<String> {
    present
        .into_iter()
        .filter(|name| {
            name.starts_with(PREFIX) && !name.starts_with(HTTP_PREFIX) && !known.contains(name)
        })
        .map(|name| match closest(name, known) {
            Some(suggestion) => {
                format!(
                    "{name} is not a dflockd setting and is ignored; did you mean {suggestion}?"
                )
            }
            None => format!("{name} is not a dflockd setting and is ignored"),
        })
        .collect()
}

/// The known name nearest to `name` by edit distance, if it is near enough to be a plausible typo; ties go
/// to the earlier name in `known`.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = MIN_SUGGESTION_DISTANCE.max(name.len() / 3);
    known
        .iter()
        .map(|candidate| (strsim::levenshtein(name, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    const KNOWN: &[&str] = &[
        "DFLOCKD_DEFAULT_LEASE_TTL_S",
        "DFLOCKD_READ_TIMEOUT_S",
        "DFLOCKD_SERVERS",
    ];

    #[test]
    fn a_misspelled_variable_is_reported_with_the_closest_known_one() {
        let warnings = unknown_variable_warnings(["DFLOCKD_DEFAULT_LEASE_TTL"], KNOWN);
        assert_eq!(
            warnings,
            [
                "DFLOCKD_DEFAULT_LEASE_TTL is not a dflockd setting and is ignored; \
              did you mean DFLOCKD_DEFAULT_LEASE_TTL_S?"
            ]
        );
        let warnings = unknown_variable_warnings(["DFLOCKD_SERVER"], KNOWN);
        assert!(warnings[0].ends_with("did you mean DFLOCKD_SERVERS?"));
    }

    #[test]
    fn a_far_off_name_gets_no_suggestion() {
        let warnings = unknown_variable_warnings(["DFLOCKD_X"], KNOWN);
        assert_eq!(
            warnings,
            ["DFLOCKD_X is not a dflockd setting and is ignored"]
        );
    }

    #[test]
    fn known_foreign_and_http_variables_are_not_reported() {
        let present = [
            "DFLOCKD_SERVERS",
            "DFLOCKD_HTTP_PORT",
            "PATH",
            "XDFLOCKD_PORT",
        ];
        assert!(unknown_variable_warnings(present, KNOWN).is_empty());
    }

    #[test]
    fn the_nearest_candidate_wins() {
        assert_eq!(
            closest("DFLOCKD_READ_TIMEOUT", KNOWN),
            Some("DFLOCKD_READ_TIMEOUT_S")
        );
        assert_eq!(closest("DFLOCKD_SERVERS_", KNOWN), Some("DFLOCKD_SERVERS"));
    }

    fn switch_command() -> Command {
        Command::new("t")
            .arg(
                Arg::new("tls")
                    .long("tls")
                    .env("T_TLS")
                    .action(ArgAction::SetTrue),
            )
            .arg(Arg::new("name").long("name").env("T_NAME"))
    }

    #[test]
    fn empty_variables_are_unset_for_clap() {
        let lookup = |name: &str| (name == "T_TLS" || name == "T_NAME").then(OsString::new);
        let command = ignore_empty_variables(switch_command(), lookup);
        assert!(command.get_arguments().all(|arg| arg.get_env().is_none()));
    }

    #[test]
    fn set_and_absent_variables_keep_their_binding() {
        let lookup = |name: &str| (name == "T_TLS").then(|| OsString::from("true"));
        let command = ignore_empty_variables(switch_command(), lookup);
        let bound: Vec<_> = command.get_arguments().filter_map(Arg::get_env).collect();
        assert_eq!(bound, ["T_TLS", "T_NAME"]);
    }
}
