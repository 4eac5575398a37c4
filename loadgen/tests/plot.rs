//! Charts written to real files: both formats, the p100 edge, empty input.

use std::path::Path;

use loadgen::plot::{Curve, HEIGHT, PlotError, WIDTH, write_plot};

const PERCENTILES: [f64; 22] = [
    1.0, 10.0, 25.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 97.0, 98.0, 99.0, 99.5,
    99.7, 99.8, 99.9, 99.95, 99.99, 100.0,
];

/// A curve that sits at `p50_ms` for the body and rises by `tail` per nine
/// past p90, ending in a max of twice p99.99.
fn shaped(name: &str, p50_ms: f64, tail: f64) -> Curve {
    let points = PERCENTILES
        .iter()
        .map(|&p| {
            let nines = -(1.0 - p.min(99.99) / 100.0).log10();
            let ms = p50_ms * (1.0 + 0.2 * nines) * tail.powf((nines - 1.0).max(0.0));
            (p, if p >= 100.0 { ms * 2.0 } else { ms })
        })
        .collect();
    Curve {
        name: name.to_string(),
        points,
    }
}

/// The four setups of `loadgen compare`, at roughly the expected scale.
fn four_curves() -> Vec<Curve> {
    vec![
        shaped("untiered", 100.0, 1.4),
        shaped("direct", 60.0, 1.5),
        shaped("direct+regional", 35.0, 1.6),
        shaped("tiered", 0.3, 6.0),
    ]
}

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24,
        "too short for a PNG: {} bytes",
        bytes.len()
    );
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[8..16], b"\0\0\0\x0dIHDR", "IHDR chunk first");
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20))
}

/// Whether the SVG has a `<text>` element reading exactly `text`.
fn svg_text(svg: &str, text: &str) -> bool {
    svg.split("<text").skip(1).any(|element| {
        element
            .split_once('>')
            .and_then(|(_, rest)| rest.split_once("</text>"))
            .is_some_and(|(content, _)| content.trim() == text)
    })
}

#[test]
fn four_curves_as_svg_and_png() {
    let dir = tempfile::tempdir().expect("tempdir");
    let curves = four_curves();

    let svg_path = dir.path().join("curves.svg");
    write_plot(&svg_path, "Read latency by percentile", &curves).expect("svg written");
    let svg = std::fs::read_to_string(&svg_path).expect("svg readable");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains(&format!("width=\"{WIDTH}\"")));
    assert!(svg_text(&svg, "Read latency by percentile"));
    for curve in &curves {
        assert!(svg_text(&svg, &curve.name), "legend lacks {}", curve.name);
    }
    for tick in ["50", "90", "99", "99.9", "99.99", "max"] {
        assert!(svg_text(&svg, tick), "no x tick {tick}");
    }
    // Log latency axis: from under the tiered p50 to over the untiered max.
    for tick in ["0.2", "1", "10", "100"] {
        assert!(svg_text(&svg, tick), "no y tick {tick}");
    }
    // One polyline per curve plus the legend swatches.
    assert!(svg.matches("<polyline").count() >= curves.len());

    let png_path = dir.path().join("curves.png");
    write_plot(&png_path, "Read latency by percentile", &curves).expect("png written");
    let png = std::fs::read(&png_path).expect("png readable");
    assert_eq!(png_size(&png), (WIDTH, HEIGHT));
}

#[test]
fn extension_is_case_insensitive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("CURVES.PNG");
    write_plot(&path, "t", &four_curves()).expect("png written");
    let png = std::fs::read(&path).expect("png readable");
    assert_eq!(png_size(&png), (WIDTH, HEIGHT));
}

#[test]
fn unknown_extension_is_a_typed_error_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["curves.jpg", "curves", "curves.svg.txt"] {
        let path = dir.path().join(name);
        let err = write_plot(&path, "t", &four_curves()).expect_err("not a chart format");
        assert!(
            matches!(&err, PlotError::UnknownExtension { path: p } if p == &path),
            "{err:?}"
        );
        assert!(!path.exists());
    }
}

#[test]
fn p100_points_do_not_break_the_log_axis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let only_max = Curve {
        name: "only-max".into(),
        points: vec![(100.0, 3.0)],
    };
    let zero_and_max = Curve {
        name: "zero-and-max".into(),
        points: vec![(0.0, 0.0), (100.0, 0.0)],
    };
    for (i, curves) in [
        vec![only_max.clone()],
        vec![zero_and_max.clone()],
        vec![only_max, zero_and_max, shaped("tiered", 0.3, 6.0)],
    ]
    .iter()
    .enumerate()
    {
        for ext in ["svg", "png"] {
            let path = dir.path().join(format!("max-{i}.{ext}"));
            write_plot(&path, "max only", curves).expect("written");
            assert!(std::fs::metadata(&path).expect("exists").len() > 0);
        }
        let svg = std::fs::read_to_string(dir.path().join(format!("max-{i}.svg"))).expect("svg");
        assert!(svg_text(&svg, "max"), "the p100 edge is labelled max");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }
}

#[test]
fn no_points_is_an_error_but_one_empty_curve_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = Curve {
        name: "failed".into(),
        points: Vec::new(),
    };

    let path = dir.path().join("none.svg");
    let err = write_plot(&path, "t", &[]).expect_err("no curves");
    assert!(matches!(err, PlotError::NoData), "{err:?}");
    let err = write_plot(&path, "t", std::slice::from_ref(&empty)).expect_err("no points");
    assert!(matches!(err, PlotError::NoData), "{err:?}");
    assert!(!path.exists());

    let mut curves = four_curves();
    curves.push(empty);
    let path = dir.path().join("some.svg");
    write_plot(&path, "t", &curves).expect("written");
    let svg = std::fs::read_to_string(&path).expect("svg");
    assert!(svg_text(&svg, "failed (no data)"));
}

#[test]
fn missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["nope/curves.svg", "nope/curves.png"] {
        let path = dir.path().join(name);
        let err = write_plot(&path, "t", &four_curves()).expect_err("no such directory");
        assert!(
            matches!(&err, PlotError::Io { path: p, source } if p == &path && source.kind() == std::io::ErrorKind::NotFound),
            "{err:?}"
        );
    }
}

/// Writes `plot-sample.{png,svg}` and `plot-sample-odd.png` (empty,
/// max-only and zero curves, a legend that wraps) to the temp directory to
/// look at: `cargo test -p loadgen --test plot -- --ignored`.
#[test]
#[ignore = "writes sample charts for eyeballing"]
fn sample_charts() {
    let dir = std::env::temp_dir();
    for ext in ["png", "svg"] {
        let path = dir.join(format!("plot-sample.{ext}"));
        write_plot(
            Path::new(&path),
            "Workers KV read latency, cloudflare-2024 profile",
            &four_curves(),
        )
        .expect("sample written");
        eprintln!("wrote {}", path.display());
    }
    let mut odd = four_curves();
    odd.extend([
        Curve {
            name: "a setup whose run failed before measuring anything".into(),
            points: Vec::new(),
        },
        Curve {
            name: "max only".into(),
            points: vec![(100.0, 40.0)],
        },
        Curve {
            name: "zero".into(),
            points: vec![(0.0, 0.0), (99.0, 0.0), (100.0, 0.0)],
        },
        Curve {
            name: "eighth".into(),
            points: vec![(50.0, 3.0), (99.9, 7.0)],
        },
    ]);
    let path = dir.join("plot-sample-odd.png");
    write_plot(&path, "Odd curves", &odd).expect("odd sample written");
    eprintln!("wrote {}", path.display());
}
