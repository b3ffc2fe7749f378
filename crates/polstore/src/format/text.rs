//! Text from elsewhere (a command's output, a file name, an error of the system) as it
//! may appear in a one-line message.

/// How much of a command's output line a message quotes.
pub const QUOTED_CHARS_MAX: usize = 300;

/// `text` on one line: every control character escaped (`\n`, `\r`, `\t`, `\e`, else
/// `\u{XX}`), so that nothing quoted can end a line, move the cursor or change a terminal's
/// colours; at most `chars_max` characters of `text` are kept, and a cut is marked `…`.
pub fn one_line(text: &str, chars_max: usize) -> String {
    let mut line = String::with_capacity(text.len().min(chars_max * 2));
    for (index, character) in text.chars().enumerate() {
        if index == chars_max {
            line.push('…');
            break;
        }
        match character {
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            '\x1b' => line.push_str("\\e"),
            character if character.is_control() => {
                line.push_str(&format!("\\u{{{:x}}}", character as u32));
            }
            character => line.push(character),
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_length_bounded() {
        assert_eq!(one_line("plain", 10), "plain");
        assert_eq!(
            one_line("a\nb\rc\td\x1b[31me\u{7f}f\u{9b}g", 100),
            "a\\nb\\rc\\td\\e[31me\\u{7f}f\\u{9b}g"
        );
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line(&"x".repeat(20_000), 300).chars().count(), 301);
    }
}
