//! Random input never panics the loader; it only returns diagnostics.

use proptest::prelude::*;

fn load(text: &str) {
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("p.toml"), text).unwrap();
    let _ = tenet_policies::load(tree.path());
}

const FRAGMENTS: &[&str] = &[
    "[[file]]\n",
    "[[line]]\n",
    "[[setting]]\n",
    "[[link]]\n",
    "[[dir]]\n",
    "[[absent]]\n",
    "[[command]]\n",
    "[[hostname]]\n",
    "[[copy]]\n",
    "[[member]]\n",
    "[[package]]\n",
    "[[value]]\n",
    "[cluster]\n",
    "path = \"/a\"\n",
    "path = \"a/../b\"\n",
    "content = \"${x}\"\n",
    "template = true\n",
    "when = \"member(a) && !holds(p)\"\n",
    "when = \"((\"\n",
    "name = \"a\"\n",
    "members = [\"a\", \"b\"]\n",
    "ip = \"1.2.3.4\"\n",
    "mode = \"0644\"\n",
    "mode = 7\n",
    "argv = []\n",
    "paths = [\"/x/*\"]\n",
    "file = \"/etc/x\"\n",
    "key = \"K\"\n",
    "value = \"v\"\n",
    "line = \"l\"\n",
    "match = \"[\"\n",
    "target = \"../..\"\n",
    "addresses = \"all\"\n",
    "configuration = \"mutual\"\n",
    "hostname = \"h\"\n",
    "from = \"/a\"\nto = \"/b\"\n",
    "= broken\n",
    "list = [\"a\", \"b\"]\n",
    "map = { k = \"v\" }\n",
    "for_each = \"${a}\"\n",
    "for_each = [\"x\", \"y\"]\n",
    "for_each = { k = \"v\" }\n",
    "path = \"/i/${item}\"\n",
    "content = \"${item.key} ${a.k}\"\n",
    "engine = \"jinja\"\n",
    "content = \"{% for x in a %}{{ x }}{% endfor %}\"\n",
    "content = \"{% if %}\"\n",
    "shell = \"echo ${item}\"\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn fragments_never_panic(picks in proptest::collection::vec(0..FRAGMENTS.len(), 0..24)) {
        let text: String = picks.iter().map(|&i| FRAGMENTS[i]).collect();
        load(&text);
    }

    #[test]
    fn bytes_never_panic(text in "\\PC{0,200}") {
        load(&text);
    }
}
