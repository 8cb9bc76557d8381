//! Unit files and the settings file as systemd reads them: sections, `EnvironmentFile=`, `ExecStart=` expansion, and QEMU's options.

use super::*;

/// A unit file: `(section, key, value)` in file order, continuation lines
/// joined with a space as systemd does, comments and blank lines dropped.
#[derive(Clone, Debug)]
pub struct UnitFile {
    pub name: String,
    pub entries: Vec<(String, String, String)>,
}

impl UnitFile {
    pub fn parse(name: &str, text: &str) -> Result<UnitFile, String> {
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut pending: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if let Some(mut acc) = pending.take() {
                // systemd skips comment lines inside a continuation.
                if line.starts_with('#') || line.starts_with(';') {
                    pending = Some(acc);
                    continue;
                }
                match line.strip_suffix('\\') {
                    Some(part) => {
                        acc.push(' ');
                        acc.push_str(part.trim_end());
                        pending = Some(acc);
                        continue;
                    }
                    None => {
                        acc.push(' ');
                        acc.push_str(line);
                        push_entry(&mut entries, &section, &acc, name, n)?;
                        continue;
                    }
                }
            }
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                section = line
                    .strip_prefix('[')
                    .and_then(|l| l.strip_suffix(']'))
                    .ok_or_else(|| format!("{name}:{}: bad section header {line:?}", n + 1))?
                    .to_string();
                continue;
            }
            match line.strip_suffix('\\') {
                Some(part) => pending = Some(part.trim_end().to_string()),
                None => push_entry(&mut entries, &section, line, name, n)?,
            }
        }
        if pending.is_some() {
            return Err(format!("{name}: file ends inside a continued line"));
        }
        Ok(UnitFile {
            name: name.to_string(),
            entries,
        })
    }

    /// A file of `deploy/`, parsed.
    pub fn load(name: &str) -> UnitFile {
        UnitFile::parse(name, &deploy_file(name)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every value of `section`/`key`, in order.
    pub fn values(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The last value of `section`/`key` (systemd's rule for single-valued keys).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.values(section, key).last().copied()
    }

    /// The effective `ExecStart=` after resets (an empty assignment clears the
    /// list, as in a drop-in); exactly one is expected.
    pub fn exec_start(&self) -> Result<String, String> {
        let mut lines: Vec<&str> = Vec::new();
        for v in self.values("Service", "ExecStart") {
            if v.is_empty() {
                lines.clear();
            } else {
                lines.push(v);
            }
        }
        match lines.as_slice() {
            [one] => Ok(one.to_string()),
            other => Err(format!(
                "{}: {} ExecStart= lines, expected one",
                self.name,
                other.len()
            )),
        }
    }
}

fn push_entry(
    entries: &mut Vec<(String, String, String)>,
    section: &str,
    line: &str,
    name: &str,
    n: usize,
) -> Result<(), String> {
    let (key, value) = line
        .split_once('=')
        .ok_or_else(|| format!("{name}:{}: not key=value: {line:?}", n + 1))?;
    if section.is_empty() {
        return Err(format!("{name}:{}: assignment outside a section", n + 1));
    }
    entries.push((
        section.to_string(),
        key.trim().to_string(),
        value.trim().to_string(),
    ));
    Ok(())
}

/// An `EnvironmentFile=`: `KEY=value` lines, `#`/`;` comments, values
/// optionally in double or single quotes. Backslashes and `$` are rejected:
/// systemd and the shell (`unikernel-health`, `install.sh`) would read them
/// differently, and the settings file promises plain values.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: not KEY=value: {line:?}", n + 1))?;
        let key = key.trim();
        if key.is_empty()
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || key.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!("line {}: bad variable name {key:?}", n + 1));
        }
        let value = value.trim();
        let value = if value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')))
        {
            &value[1..value.len() - 1]
        } else {
            value
        };
        if value.contains(['\\', '$', '`', '"', '\'']) {
            return Err(format!(
                "line {}: {key}={value:?} has a character systemd and the shell read differently",
                n + 1
            ));
        }
        env.insert(key.to_string(), value.to_string());
    }
    Ok(env)
}

/// Splits a command line into words: whitespace separates, `"..."` and
/// `'...'` quote. Backslash escapes are not supported (an error).
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Ok(words);
        };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            let mut closed = false;
            for c in chars.by_ref() {
                if c == first {
                    closed = true;
                    break;
                }
                if c == '\\' {
                    return Err(format!("backslash in {line:?}: not supported here"));
                }
                word.push(c);
            }
            if !closed {
                return Err(format!("unterminated quote in {line:?}"));
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err(format!("text right after a closing quote in {line:?}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' || c == '"' || c == '\'' {
                    return Err(format!(
                        "{c:?} inside a word of {line:?}: not supported here"
                    ));
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
}

/// Replaces systemd specifiers in `word`: `%%` and the ones in `specifiers`
/// (e.g. `'i'` → instance, `'t'` → runtime directory root). Any other is an error.
pub fn expand_specifiers(
    word: &str,
    specifiers: &BTreeMap<char, String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(s) => match specifiers.get(&s) {
                Some(value) => out.push_str(value),
                None => return Err(format!("specifier %{s} in {word:?} not known to the test")),
            },
            None => return Err(format!("lone % at the end of {word:?}")),
        }
    }
    Ok(out)
}

/// Replaces every `${NAME}` in `word` with its value in `env` (empty if unset).
fn expand_braced(word: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in {word:?}"))?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad variable name {name:?} in {word:?}"));
        }
        out.push_str(env.get(name).map(String::as_str).unwrap_or(""));
        rest = &after[end + 1..];
    }
    if rest.contains('$') {
        return Err(format!(
            "a `$` in {word:?} that systemd would not expand (use ${{NAME}}, or $NAME as a whole word)"
        ));
    }
    out.push_str(rest);
    Ok(out)
}

/// The argv systemd runs for the command line `line` (an `ExecStart=` value)
/// with environment `env` and the given specifiers. See the module doc.
pub fn expand_command(
    line: &str,
    env: &BTreeMap<String, String>,
    specifiers: &BTreeMap<char, String>,
) -> Result<Vec<String>, String> {
    let line = line.trim_start_matches(['-', '@', ':', '+', '!']);
    let mut argv = Vec::new();
    for word in split_words(line)? {
        let word = expand_specifiers(&word, specifiers)?;
        let whole = word.strip_prefix('$').filter(|name| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        match whole {
            Some(name) => {
                let value = env.get(name).map(String::as_str).unwrap_or("");
                argv.extend(value.split_whitespace().map(str::to_string));
            }
            None => argv.push(expand_braced(&word, env)?),
        }
    }
    if argv.is_empty() {
        return Err(format!("{line:?} expands to nothing"));
    }
    Ok(argv)
}

/// The QEMU options of `argv` (program name first) as sorted `(option,
/// value)` pairs, so two command lines compare whatever their order. Only the
/// flags in [`VALUELESS_QEMU_FLAGS`] stand alone; every other option takes
/// the next word.
pub fn qemu_options(argv: &[String]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut words = argv.iter().skip(1);
    while let Some(word) = words.next() {
        if VALUELESS_QEMU_FLAGS.contains(&word.as_str()) {
            out.push((word.clone(), None));
        } else {
            out.push((word.clone(), words.next().cloned()));
        }
    }
    out.sort();
    out
}

/// The value-less QEMU flags the launcher and the units use.
pub const VALUELESS_QEMU_FLAGS: &[&str] = &["-nodefaults", "-no-user-config", "-no-reboot"];

/// The value after `flag` for every occurrence in `argv`.
pub fn flag_values<'a>(argv: &'a [String], flag: &str) -> Vec<&'a str> {
    argv.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unit_file_continuations_comments_and_resets() {
        let text = "# c\n[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/a \\\n    b \\\n# skipped\n    c\nExecStart=\nExecStart=/bin/d\n";
        let u = UnitFile::parse("t.service", text).unwrap();
        assert_eq!(u.get("Unit", "Description"), Some("x"));
        assert_eq!(
            u.values("Service", "ExecStart"),
            ["/bin/a b c", "", "/bin/d"]
        );
        assert_eq!(u.exec_start().unwrap(), "/bin/d");
        assert!(UnitFile::parse("t", "Key=1\n").is_err());
        assert!(UnitFile::parse("t", "[S]\nA=b \\\n").is_err());
    }

    #[test]
    fn env_file_quotes_and_rejections() {
        let e = parse_env_file("# c\nA=\"x y\"\nB='z'\nC=plain\n; c\n").unwrap();
        assert_eq!(e, env(&[("A", "x y"), ("B", "z"), ("C", "plain")]));
        assert!(parse_env_file("A=\"$HOME\"\n").is_err());
        assert!(parse_env_file("A=a\\b\n").is_err());
        assert!(parse_env_file("1A=x\n").is_err());
        assert!(parse_env_file("novalue\n").is_err());
    }

    #[test]
    fn command_expansion_follows_systemd() {
        let e = env(&[("ACC", "-accel kvm -accel tcg"), ("P", "80"), ("E", "")]);
        let s = BTreeMap::from([('t', "/run".to_string()), ('i', "a".to_string())]);
        let argv = expand_command(
            "-qemu $ACC -net x:${P}-:80,y=${UNSET} -q %t/u-%i/s $E %%",
            &e,
            &s,
        )
        .unwrap();
        assert_eq!(
            argv,
            [
                "qemu",
                "-accel",
                "kvm",
                "-accel",
                "tcg",
                "-net",
                "x:80-:80,y=",
                "-q",
                "/run/u-a/s",
                "%"
            ]
        );
        // `${X}` keeps whitespace in one word.
        let argv = expand_command("a ${ACC}", &e, &s).unwrap();
        assert_eq!(argv, ["a", "-accel kvm -accel tcg"]);
        assert!(expand_command("a %n", &e, &s).is_err());
        assert!(expand_command("a x$P", &e, &s).is_err());
        assert!(expand_command("a b\\c", &e, &s).is_err());
        assert_eq!(split_words("a \"b c\" 'd'").unwrap(), ["a", "b c", "d"]);
        assert!(split_words("a \"b").is_err());
    }
}
