//! Plain-text tables for people: columns padded to their widest cell, numbers right-aligned.

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Renders `rows` under `header`, two spaces between columns, no trailing spaces.
pub fn render(header: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(i, (title, _))| {
            rows.iter()
                .filter_map(|row| row.get(i))
                .map(|cell| cell.chars().count())
                .chain([title.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(header)
            .zip(&widths)
            .map(|((cell, (_, align)), &width)| match align {
                Align::Left => format!("{cell:<width$}"),
                Align::Right => format!("{cell:>width$}"),
            })
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = line(header.iter().map(|(title, _)| *title).collect());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned() {
        let table = render(
            &[("model", Align::Left), ("share", Align::Right)],
            &[
                vec!["mnist-linear".into(), "61.2%".into()],
                vec!["cnn".into(), "4.0%".into()],
            ],
        );
        assert_eq!(
            table,
            "model         share\nmnist-linear  61.2%\ncnn            4.0%\n"
        );
    }
}
