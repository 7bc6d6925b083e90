//! Pagination tokens for ListVolumes and ListSnapshots.
//!
//! A token names the last id returned, so concurrent creates and deletes never make a page
//! repeat or skip an entry that existed throughout. A token we did not issue is ABORTED, as
//! the CSI spec asks.

use crate::error::Error;

const PREFIX: &str = "after:";

pub fn token_after(last_id: &str) -> String {
    format!("{PREFIX}{last_id}")
}

/// The id after which a page starts; `None` for the first page.
pub fn start_after(token: &str) -> Result<Option<&str>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .strip_prefix(PREFIX)
        .filter(|s| !s.is_empty())
        .map(Some)
        .ok_or_else(|| {
            Error::Aborted(format!(
                "starting_token {} was not issued by this driver; restart the listing without a token",
                crate::error::echo(token)
            ))
        })
}

/// Takes one page from `sorted` (ascending by `id`).
pub fn page<T>(
    sorted: Vec<T>,
    id: impl Fn(&T) -> &str,
    max_entries: i32,
    starting_token: &str,
) -> Result<(Vec<T>, String), Error> {
    if max_entries < 0 {
        return Err(Error::InvalidArgument(format!(
            "max_entries {max_entries} is negative"
        )));
    }
    let after = start_after(starting_token)?;
    let mut rest: Vec<T> = match after {
        Some(a) => sorted.into_iter().filter(|x| id(x) > a).collect(),
        None => sorted,
    };
    if max_entries == 0 || rest.len() <= max_entries as usize {
        return Ok((rest, String::new()));
    }
    rest.truncate(max_entries as usize);
    let next = token_after(id(rest.last().expect("max_entries > 0")));
    Ok((rest, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_everything_once() {
        let ids: Vec<String> = (0..7).map(|i| format!("v{i}")).collect();
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let (p, next) = page(ids.clone(), |s| s.as_str(), 3, &token).unwrap();
            seen.extend(p);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, ids);
    }

    #[test]
    fn foreign_tokens_are_aborted() {
        let e = page(vec!["a".to_string()], |s| s.as_str(), 1, "invalid-token").unwrap_err();
        assert_eq!(tonic::Status::from(e).code(), tonic::Code::Aborted);
    }
}
