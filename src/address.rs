//! Email addresses as delivery sends to them: how a field splits into
//! addresses and which ones are accepted, one parser for `check`, `preview`
//! and delivery.

/// What separates the addresses of one field: `;` (docs/contract.md §2) and,
/// on purpose, `,` (as accounting exports and mail clients write lists). An
/// accepted address never holds either: both appear only in display names
/// and quoted local parts, which are refused.
pub const SEPARATORS: [char; 2] = [';', ','];

/// The addresses of a field, trimmed, without empty parts, valid or not.
pub fn split(field: &str) -> impl Iterator<Item = &str> {
    field
        .split(SEPARATORS)
        .map(str::trim)
        .filter(|a| !a.is_empty())
}

/// An address as delivery sends to it (lettre's parser), or why it is none.
/// A display name (`Boss <boss@example.com>`) is refused: messages carry the
/// customer's name themselves. A quoted local part (`"a b"@example.com`) is
/// refused too: lettre takes it, but few servers deliver it and a separator
/// inside it would split it.
pub fn parse(address: &str) -> Result<lettre::Address, String> {
    if address.contains(['<', '>']) {
        return Err(
            "a display name is not accepted: write the address alone (the message carries the customer's name)"
                .into(),
        );
    }
    if address.contains('"') {
        return Err("a quoted local part (\"…\"@) is not accepted".into());
    }
    if !address.contains('@') {
        return Err("not an email address (no @)".into());
    }
    address
        .parse()
        .map_err(|e: lettre::address::AddressError| format!("not an email address ({e})"))
}

/// Why a list of addresses the config or a policy sets (`reply_to:`) is
/// refused, if it is: an address delivery would refuse, or none at all.
pub fn refused_in(list: &str) -> Option<String> {
    let mut any = false;
    for address in split(list) {
        any = true;
        if let Err(why) = parse(address) {
            return Some(format!("{}: {why}", crate::diagnostics::quote(address)));
        }
    }
    (!any).then(|| "no address".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semicolons_and_commas_separate_addresses() {
        let parts: Vec<&str> = split(" a@x.fr; b@y.fr ,c@z.fr;; ").collect();
        assert_eq!(parts, ["a@x.fr", "b@y.fr", "c@z.fr"]);
    }

    #[test]
    fn only_plain_addresses_are_accepted() {
        for good in ["a@x.fr", "compta+relance@sub.x.fr", "a@localhost"] {
            assert!(parse(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("not an address", "no @"),
            ("Boss <a@b.fr>", "display name"),
            ("\"a b\"@x.fr", "quoted local part"),
            ("a b@x.fr", "not an email address"),
            ("a@", "not an email address"),
            ("a@x_y..fr", "not an email address"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_list_is_refused_for_its_first_bad_address_or_for_having_none() {
        assert_eq!(refused_in("a@x.fr; b@y.fr"), None);
        assert_eq!(
            refused_in("a@x.fr, Boss <b@y.fr>").unwrap(),
            "\"Boss <b@y.fr>\": a display name is not accepted: write the address alone (the message carries the customer's name)"
        );
        assert_eq!(refused_in(" ; ").unwrap(), "no address");
    }
}
