"""Population footers (「対象」) of notebooks 01–05 and of the chart builders behind them
(docs/rules.md §16): every chart and rate table states who is counted, in the words of the one
definition (`hsutils.analysis.indicators.POP_*`, the registry's populations), never a literal.

Three layers: the words themselves equal the docs; the library's chart builders put the right
words into the drawn footer (small fixtures and the session's demo cache); the notebooks pass
only those definitions to `ctx.footer` (read from the notebook sources, no kernel)."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from hsutils.analysis import indicators, references
from hsutils.core.errors import ParameterError
from hsutils.inputs import lookback
from hsutils.patterns import evaluation, ikkatsu, nephropathy, overview
from hsutils.running import notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["01_prefecture_overview.ipynb", "02_large_insurer.ipynb", "03_ikkatsu.ipynb",
             "04_nephropathy.ipynb", "05_evaluation.ipynb"]


def footer_of(fig) -> str:
    """The footer line as drawn (wrapped lines joined again)."""
    return "".join(t.get_text().replace("\n", "") for t in fig.texts if t.get_gid() == "footer")


def population_in(fig) -> str:
    """What the drawn footer states after 「対象: 」, up to the next part (「 ｜ 」, or 「条件: 」 / a
    「※」 note at the start of a wrapped line, where the separator is not drawn)."""
    m = re.search(r"対象: (.*?)(?: ｜ |条件: |※|$)", footer_of(fig))
    assert m, footer_of(fig)
    return m.group(1)


# ---------------------------------------------------------------------------------------------
# the words
# ---------------------------------------------------------------------------------------------
def _rules_16_words() -> set[str]:
    text = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    section = text.split("## §16 ", 1)[1].split("\n## ", 1)[0]
    return {line.split("|")[1].strip() for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| 表記")}


def test_every_population_constant_is_a_word_of_rules_16():
    words = _rules_16_words()
    constants = {n: getattr(indicators, n) for n in dir(indicators) if n.startswith("POP_")}
    assert set(constants) == {"POP_TARGET", "POP_EXAMINEES", "POP_ALL_EXAMINEES", "POP_INSURED",
                              "POP_INSURED_BOTH", "POP_KOUKI", "POP_KOUKI_INSURED", "POP_KOUKI_ALL_EXAMINEES",
                              "POP_BOTH_ALL_EXAMINEES", "POP_HOTEI"}
    assert set(constants.values()) == words


def test_notebook_04_words_for_each_insurance_are_words_of_rules_16():
    """国保 / 後期 / 全体 (notebook 04's `target_insurance`): the flow's and the CKD maps' populations."""
    words = _rules_16_words()
    assert [nephropathy.population_label(i) for i in nephropathy.INSURANCE_CHOICES] == [
        "国保 被保険者（全員）", "後期高齢者医療 被保険者（全員）", "国保・後期の被保険者（全員）"]
    for insurance in nephropathy.INSURANCE_CHOICES:
        assert nephropathy.population_label(insurance) in words
        base = indicators.ALL_EXAMINEES_BY_INSURANCE[insurance]
        assert base in words
        assert nephropathy.ckd_population(nephropathy.POP_ALL, insurance) == f"{base}（eGFR・尿蛋白とも測定）"
        assert nephropathy.ckd_population(nephropathy.POP_DIABETES, insurance) == (
            f"{base}のうち糖尿病（人工透析中の人を除く）（eGFR・尿蛋白とも測定）")
    assert nephropathy.ckd_population(nephropathy.POP_ALL, "後期") == "後期高齢者医療 健診受診者（全員）（eGFR・尿蛋白とも測定）"
    assert evaluation.GUIDANCE_PAIRS_POPULATION == (
        "国保 特定健診受診者（法定報告対象）のうち特定保健指導の対象者（両年度に健診受診）")


def _string_constants(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings]


@pytest.mark.parametrize("path", sorted((ROOT / "hsutils" / "patterns").glob("*.py")), ids=lambda p: p.name)
def test_pattern_modules_write_no_population_word_of_their_own(path):
    """A pattern module names who is counted through `indicators.POP_*` / `population_of`: none of its
    string literals is a word of docs/rules.md §16 or looks like one (「…被保険者（全員）」, 「…受診者（全員）」).
    The 法定報告 modules too (hotei.py, nonparticipants.py: their own longer wording until 2026-11-30)."""
    words = _rules_16_words()
    for text in _string_constants(path):
        assert not any(w in text for w in words), (path.name, text)
        assert not re.search(r"(被保険者|受診者)（全員）", text), (path.name, text)


def test_every_registered_population_starts_with_a_word_of_rules_16():
    """An indicator's population is a §16 word, or a subset written after it (「…のうち糖尿病型」);
    the two 減少率 cohorts too (受診者 of last year's group, docs/hotei.md §4)."""
    words = _rules_16_words()
    for ind in indicators.INDICATORS:
        assert any(ind.population == w or ind.population.startswith(f"{w}のうち") for w in words), ind.id
    for cohort in ("metabo_reduction", "hokenshido_reduction"):
        assert indicators.REGISTRY[cohort].population.startswith(f"{indicators.POP_EXAMINEES}のうち前年度の"), cohort
    assert indicators.REGISTRY["hokenshido_rate"].population == "国保 特定健診受診者（法定報告対象）のうち特定保健指導の対象者"


def test_population_of_one_or_several_indicators():
    assert indicators.population_of("kenshin_rate") == "国保 特定健診対象者（法定報告対象）"
    assert indicators.population_of(["metabo"]) == "国保 特定健診受診者（法定報告対象）"
    # several populations: each once, in the order of the indicators
    assert indicators.population_of(["metabo", "kenshin_rate", "hba1c8", "ik_oral"]) == (
        "指標により 国保 特定健診受診者（法定報告対象）、国保 特定健診対象者（法定報告対象）、後期高齢者 75歳以上")
    assert indicators.population_of(pd.Series(["hba1c8", "metabo"])) == "国保 特定健診受診者（法定報告対象）"
    with pytest.raises(ParameterError, match="指標「no_such」は登録されていません"):
        indicators.population_of(["kenshin_rate", "no_such"])
    with pytest.raises(ParameterError, match="一つ以上"):
        indicators.population_of([])


def test_kouki_population_follows_the_minimum_age_of_notebook_03():
    assert indicators.kouki_population() == indicators.POP_KOUKI == "後期高齢者 75歳以上"
    assert ikkatsu.population() == indicators.POP_KOUKI
    assert ikkatsu.population(ikkatsu.make_params(min_age=65)) == "後期高齢者 65歳以上"
    assert ikkatsu.QUESTIONNAIRE_POPULATION == "後期高齢者 75歳以上のうち質問票の回答者"
    assert nephropathy.population_label("全体") == indicators.POP_INSURED_BOTH


# ---------------------------------------------------------------------------------------------
# the library's chart builders (notebook 01) draw the definition
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ctx01(prepared, tmp_path_factory):
    return notebook.start(overview.NOTEBOOK, "17", None, out_dir=tmp_path_factory.mktemp("footers01"))


@pytest.fixture(scope="module")
def table01(prepared):
    return overview.municipal_indicator_table(prepared, prepared.fiscal_years,
                                              indicator_ids=["kenshin_rate", "hokenshido_rate", "metabo", "ik_oral",
                                                             "dm_interrupted", "ik_interruption"])[0]


@pytest.mark.parametrize("indicator_id", ["kenshin_rate", "hokenshido_rate", "metabo", "ik_oral",
                                          "dm_interrupted", "ik_interruption"])
def test_overview_funnel_ranking_and_trend_state_the_indicator_population(ctx01, table01, prepared, indicator_id):
    """The population; and for an indicator judged with the claims look-back, the cache's window
    (docs/hotei.md §7.5), nowhere else."""
    fy = prepared.fiscal_years[-1]
    expected = indicators.REGISTRY[indicator_id].population
    window = indicators.lookback_note(indicator_id, prepared.meta["claims_history"])
    assert (window is not None) == (indicator_id in ("dm_interrupted", "ik_interruption"))
    area = overview.area_trend_table(prepared, prepared.fiscal_years, [indicator_id], "H27")
    funnel = overview.funnel_chart(ctx01, table01, indicator_id, fy)
    if funnel is None:  # the prefecture pools 1–9 cases on the small demo: no target, the notebook says why
        assert overview.funnel_missing_reason(table01, indicator_id, fy).startswith("比較なし（")
    for fig in [f for f in (funnel, overview.ranking_chart(ctx01, table01, indicator_id, fy),
                            overview.trend_figure(ctx01, area, indicator_id)) if f is not None]:
        assert population_in(fig) == expected
        assert (window is not None and window in footer_of(fig)) or (window is None and "さかのぼり" not in footer_of(fig))


def test_overview_pyramid_and_priority_chart(ctx01, table01, prepared):
    fy = prepared.fiscal_years[-1]
    fig = overview.pyramid_figure(ctx01, overview.insured_pyramid(prepared, fy), fy)
    assert population_in(fig) == "国保 被保険者（全員）のうち40〜74歳 と 後期高齢者 75歳以上"
    keys = ["metabo", "ik_oral"]
    priority = overview.support_priority(table01, fy, key_indicators=keys)
    fig = overview.priority_chart(ctx01, priority, overview.DEFAULT_WEIGHTS, key_indicators=keys)
    # the key indicators and the two participation rates of the score
    assert population_in(fig) == ("指標により 国保 特定健診受診者（法定報告対象）、後期高齢者 75歳以上、"
                                  "国保 特定健診対象者（法定報告対象）、"
                                  "国保 特定健診受診者（法定報告対象）のうち特定保健指導の対象者")


def test_overview_data_summary_labels_are_the_definitions(prepared):
    items = overview.persons_by_year(prepared).iloc[:, 0].tolist()
    for word in (indicators.POP_TARGET, indicators.POP_EXAMINEES, indicators.POP_KOUKI):
        assert word in items


# ---------------------------------------------------------------------------------------------
# the notebooks pass only the definitions
# ---------------------------------------------------------------------------------------------
#: How a notebook may name a population: a POP_* constant, the registry (`population_of`), the
#: pattern modules' definitions, or a variable assigned from one of these in the same notebook.
ALLOWED = re.compile(r"^(?:(?:indicators|registry)\.(?:POP_[A-Z_]+|population_of\(.*\)|kouki_population\(.*\))"
                     r"|ikkatsu\.(?:population\(.*\)|QUESTIONNAIRE_POPULATION)"
                     r"|nep\.(?:population_label|ckd_population|indicator_population)\(.*\)"
                     r"|evaluation\.(?:GUIDANCE_PAIRS_POPULATION|sheet_population\(.*\))|hotei\.POPULATION"
                     r"|overview\.PYRAMID_POPULATION)$", re.S)


def _code(name: str) -> str:
    nb = json.loads((ROOT / "notebooks" / name).read_text(encoding="utf-8"))
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def _source(code: str) -> str:
    """The code without IPython magics (%matplotlib), so that it parses."""
    return "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("%"))


def _footer_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "footer"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "ctx"):
            yield node


def _is_ctx_footer(node) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "footer"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "ctx")


def _assignments(tree: ast.AST) -> dict[str, ast.expr]:
    return {t.id: node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_footers_name_their_population_by_its_definition(name):
    code = _source(_code(name))
    tree = ast.parse(code)
    assigned = _assignments(tree)
    calls = list(_footer_calls(tree))
    assert len(calls) >= 4, name
    for call in calls:
        arg = call.args[0] if call.args else next(k.value for k in call.keywords if k.arg == "population")
        if isinstance(arg, ast.Name):  # e.g. population = ikkatsu.population(params)
            assert arg.id in assigned, (name, arg.id)
            arg = assigned[arg.id]
        text = ast.get_source_segment(code, arg)
        # Japanese text written into the call (ids and column names such as "kenshin_rate" are ASCII)
        literals = [n for n in ast.walk(arg) if isinstance(n, ast.JoinedStr) or (
            isinstance(n, ast.Constant) and isinstance(n.value, str) and not n.value.isascii())]
        assert not literals, f"{name}: literal population in ctx.footer({text})"
        assert ALLOWED.match(text), f"{name}: ctx.footer({text}) does not use a definition of docs/rules.md §16"



@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_chart_of_the_notebook_gets_a_footer_from_ctx(name):
    """Charts drawn in the notebook (`plots.*`, `districts.*_figure`) get `footer=` (or the
    positional footer of the district figures) built by `ctx.footer`; the overview charts build
    theirs in the library (tested above)."""
    code = _source(_code(name))
    tree = ast.parse(code)
    assigned = _assignments(tree)
    charts = 0
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)):
            continue
        module, fn = node.func.value.id, node.func.attr
        drawn = (module == "plots" and fn not in ("fy_japanese", "footer")) or (
            module in ("districts", "nep", "evaluation") and fn.endswith("_figure"))
        if not drawn:
            continue
        charts += 1
        footer = next((k.value for k in node.keywords if k.arg == "footer"), None)
        if footer is None and module == "districts":  # (table, id, footer) or gap_figure(gap, footer)
            footer = node.args[1] if fn == "gap_figure" else node.args[2]
        elif footer is None:  # nep.*_figure, evaluation.*_figure: the positional ctx.footer(...) or a name bound to one
            footer = next((a for a in node.args if _is_ctx_footer(a) or (
                isinstance(a, ast.Name) and _is_ctx_footer(assigned.get(a.id)))), None)
        assert footer is not None, f"{name}: {module}.{fn} without a footer"
        if isinstance(footer, ast.Name):
            footer = assigned[footer.id]
        assert isinstance(footer, ast.Call) and ast.get_source_segment(code, footer).startswith("ctx.footer("), \
            f"{name}: {module}.{fn} footer is not ctx.footer(...)"
    assert charts >= 2, name



def test_a_population_longer_than_the_page_wraps_inside_it():
    """The 「対象」 of a chart of many indicators can be wider than the page: it wraps by characters
    (before, the line ran off the right edge of notebook 02's district profile)."""
    from hsutils.publish import plots

    pop = indicators.population_of(list(indicators.KEY_INDICATORS) + ["dm_untreated"])
    text = plots.footer("入力データ", 2024, pop, "粗率")
    width = 500.0
    lines = plots._footer_lines(text, [], False, width)
    assert len(lines) >= 3
    assert all(plots._text_width_pt(line, plots._FOOTER_SIZE) <= width for line in lines)
    assert f"対象: {pop}" in "".join(lines)        # every character kept, in order
    assert lines[0] == "出典: 入力データ ｜ 年度: 令和6年度（2024）"


# ---------------------------------------------------------------------------------------------
# the claims look-back of cached indicators (docs/hotei.md §7.5)
# ---------------------------------------------------------------------------------------------
#: meta.json `claims_history` of a cache whose claims start in April 2021 (fiscal years 2022–2024): 24 months
#: to the end of 2022, so every year is judged with 24 (docs/hotei.md §7.3)
HISTORY = {"first_ym": 202104, "months_to_fy_end": {"2022": 24, "2023": 36, "2024": 48},
           "interruption_lookback": {"requested": 36, "used": 24},
           "nephropathy_lookback": {"requested": 36, "used": 24}}


def test_the_registry_marks_the_indicators_judged_with_the_claims_look_back():
    marked = {i.id: i.lookback for i in indicators.INDICATORS if i.lookback}
    assert marked == {"dm_untreated": "nephropathy", "dm_interrupted": "nephropathy", "dm_egfr45": "nephropathy",
                      "dm_urine_protein1": "nephropathy", "ik_interruption": "interruption",
                      "ik_disease_frailty": "interruption"}
    assert set(marked.values()) <= set(indicators.LOOKBACK_KINDS)
    # the reference-comparison charts (notebooks 01–05) show none of them: their footers need no window
    assert not {*references.COMPARISON_INDICATORS, "hba1c65", "bmi25"} & set(marked)


def test_lookback_note_states_the_caches_window_in_the_words_of_lookback():
    common = "レセプトは2021年4月から。レセプトのさかのぼり期間は、最初の年度にそろえて全年度 24か月（既定 36か月）"
    assert indicators.lookback_note("dm_interrupted", HISTORY) == common
    assert indicators.lookback_note(["kenshin_rate", "ik_interruption", "dm_untreated"], HISTORY) == common  # once
    assert indicators.lookback_note(["kenshin_rate", "new_dialysis"], HISTORY) is None  # §7.4: not this window
    assert indicators.lookback_note("dm_untreated", None) is None  # a cache without claims history: nothing to state
    full = {**HISTORY, "nephropathy_lookback": {"requested": 36, "used": 36}}
    assert indicators.lookback_note("dm_untreated", full) == "レセプトは2021年4月から。レセプトのさかのぼり期間 36か月（全年度同じ）"
    # two programs with different windows: each named
    assert indicators.lookback_note(["dm_untreated", "ik_interruption"], full) == (
        "糖尿病性腎症（治療中断・未治療）: レセプトは2021年4月から。レセプトのさかのぼり期間 36か月（全年度同じ）；"
        "一体的実施（治療中断）: " + common)
    with pytest.raises(ParameterError, match="no_such"):
        indicators.lookback_note(["no_such"], HISTORY)
    assert indicators.footer_conditions("県内全市町", ["dm_untreated"], HISTORY) == f"県内全市町／{common}"
    assert indicators.footer_conditions(None, ["metabo"], HISTORY) is None
    assert indicators.footer_conditions("粗率", (), HISTORY) == "粗率"


def test_history_from_the_first_month_equals_the_history_of_the_claims():
    claims = pd.DataFrame({"person_id": ["a", "b"], "ym": [202107, 202104]})
    expected = lookback.claims_history(claims, [2024, 2022, 2023])
    pd.testing.assert_frame_equal(lookback.history_from_first_ym(202104, [2022, 2023, 2024]), expected)
    assert expected["months_to_fy_end"].tolist() == [24, 36, 48]
    pd.testing.assert_frame_equal(lookback.history_from_first_ym(None, [2022]), lookback.claims_history(None, [2022]))


def test_the_session_cache_records_the_window_the_rule_gives(prepared):
    """The footer reads meta.json; the window there is `allowed_lookback` over every fiscal year of the data."""
    h = prepared.meta["claims_history"]
    first = pd.DataFrame({"ym": [h["first_ym"]]})
    used = lookback.allowed_lookback(first, prepared.fiscal_years, 36, 6)
    assert h["nephropathy_lookback"] == {"requested": 36, "used": used}
    assert indicators.lookback_note("dm_untreated", h) == lookback.lookback_note(
        36, used, lookback.claims_history(first, prepared.fiscal_years))


def _lookback_of(call: ast.Call):
    return next((k.value for k in call.keywords if k.arg == "lookback"), None)


def _ids_of_population(code: str, arg: ast.expr):
    """The indicator-id expression of `population_of(X)` / `nep.indicator_population(X)`, else None."""
    if (isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute)
            and arg.func.attr in ("population_of", "indicator_population") and arg.args):
        return arg.args[0]
    return None


@pytest.mark.parametrize("name", ["01_prefecture_overview.ipynb", "02_large_insurer.ipynb",
                                  "04_nephropathy.ipynb", "05_evaluation.ipynb"])
def test_notebook_footers_of_cached_indicators_state_the_look_back(name):
    """A footer whose population comes from indicators passes the same indicators as `lookback=`, so
    a look-back-dependent one (02's funnel of dm_untreated, 01 with dm_interrupted chosen) states
    the window (docs/hotei.md §7.5). Ids written as constants need it only when one is marked. The
    reference-comparison and EB charts show `references.COMPARISON_INDICATORS` (none marked, tested above)."""
    code = _source(_code(name))
    tree = ast.parse(code)
    exempt = {id(n) for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("reference_comparison_chart", "smoothed_ratio_chart") for n in ast.walk(node)}
    checked = 0
    for call in _footer_calls(tree):
        ids = _ids_of_population(code, call.args[0]) if call.args else None
        if ids is None or id(call) in exempt:
            continue
        given = _lookback_of(call)
        if isinstance(ids, ast.Constant) or (isinstance(ids, ast.List) and all(isinstance(e, ast.Constant) for e in ids.elts)):
            values = [ids.value] if isinstance(ids, ast.Constant) else [e.value for e in ids.elts]
            if not any(indicators.REGISTRY[v].lookback for v in values):
                continue
            assert given is not None, f"{name}: ctx.footer({ast.get_source_segment(code, call.args[0])}) without lookback="
        else:
            assert given is not None, f"{name}: ctx.footer({ast.get_source_segment(code, call.args[0])}) without lookback="
            seg = ast.get_source_segment(code, given)
            want = ast.get_source_segment(code, ids)
            assert seg in (want, f"[{want}]"), f"{name}: lookback={seg} is not the population's indicators {want}"
        checked += 1
    assert checked >= 1, name
