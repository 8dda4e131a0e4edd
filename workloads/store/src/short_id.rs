//! An issue's short id as people see it: `PROJECT-1Z`, the project slug in upper case and
//! the per-project number (`groups.short_id`, set by a trigger) in base 36, as Sentry
//! shows it in the API (`shortId`) and in notifications.

use crate::groups::Group;

const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// `<PROJECT SLUG>-<number in base 36>`; a number below zero (never stored) counts as its
/// absolute value.
pub fn short_id(project_slug: &str, number: i64) -> String {
    format!("{}-{}", project_slug.to_ascii_uppercase(), base36(number))
}

fn base36(number: i64) -> String {
    let mut n = number.unsigned_abs();
    let mut digits = Vec::new();
    loop {
        digits.push(char::from(DIGITS[(n % 36) as usize]));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

impl Group {
    /// This issue's [`short_id`].
    pub fn display_short_id(&self) -> String {
        short_id(&self.project_slug, self.short_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_base36_after_the_upper_case_slug() {
        assert_eq!(short_id("backend", 0), "BACKEND-0");
        assert_eq!(short_id("backend", 1), "BACKEND-1");
        assert_eq!(short_id("backend", 35), "BACKEND-Z");
        assert_eq!(short_id("backend", 36), "BACKEND-10");
        assert_eq!(short_id("my-app", 71), "MY-APP-1Z");
        assert_eq!(short_id("p", 36 * 36 * 36), "P-1000");
        assert_eq!(short_id("p", i64::MAX), "P-1Y2P0IJ32E8E7");
        assert_eq!(short_id("p", -71), "P-1Z");
    }
}
