"""The `hsutils` command: demo data, data checks, gallery, batch runs.

Each sub-command imports its module lazily so that `hsutils --help` stays fast and a user
mistake is reported as a Japanese message, not a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _cmd_demo(args) -> int:
    from hsutils.demo import synth

    out = Path(args.out)
    if args.streamed:  # a large prefecture in bounded memory: one Parquet/CSV file per table
        summary = synth.write_demo_streamed(out, scale=args.scale, seed=args.seed, fmt=args.format,
                                            encoding=args.encoding,
                                            progress=lambda b, n: print(f"  ブロック {b}/{n} 完了", flush=True))
    else:
        summary = synth.write_demo(out, scale=args.scale, seed=args.seed, encoding=args.encoding,
                                   claims_format=args.claims_format, kenshin_format=args.kenshin_format)
    print(summary)
    print(f"デモデータを書き出しました: {out.resolve()}")
    return 0


def _cmd_check(args) -> int:
    from hsutils.inputs import io

    text, problems = io.check_folder_report(Path(args.folder), column_map=args.column_map)
    print(text)
    return 1 if problems else 0  # a scheduler or script must see that the folder is not usable


def _cmd_gallery(args) -> int:
    from hsutils.running import gallery

    index = gallery.build_gallery(Path(args.out), data_dir=Path(args.data) if args.data else None)
    print(f"ギャラリーを作成しました: {Path(index).resolve()}")
    return 0


def _cmd_batch(args) -> int:
    from hsutils.analysis import cluster
    from hsutils.running import batch

    if args.scheduler:  # the shared pass (pipeline.prepare_cache) and the notebook runs (dispatch) read it
        os.environ[cluster.ENV_SCHEDULER] = args.scheduler

    return batch.run_batch(Path(args.params), out=Path(args.out) if args.out else None,
                           jobs=args.jobs, resume=args.resume)


def _cmd_workers(args) -> int:
    from hsutils.analysis import cluster
    from hsutils.core.errors import ParameterError
    from hsutils.running import dispatch

    address = cluster.scheduler_address(args.scheduler)
    if not address:
        raise ParameterError("スケジューラのアドレスを --scheduler（例: tcp://10.0.0.5:8786）か環境変数 "
                             f"{cluster.ENV_SCHEDULER} で指定してください。")
    folders = [str(Path(f).resolve()) for f in args.folders]
    with cluster.client(address) as c:
        reports = c.run(dispatch.worker_report, folders, args.kernel)
        problems = dispatch.check_workers(c, folders, args.kernel, reports=reports)
    print(f"スケジューラ {address} のワーカー {len(reports)} 台:")
    if reports:
        print(dispatch.describe_workers(reports))
    if problems:
        print("一括実行のノートブックを実行できない点があります:\n  " + "\n  ".join(problems))
        return 1
    print("すべてのワーカーで、このマシンと同じ hsutils・日本語フォント・カーネルが使え、指定のフォルダが見えます。")
    return 0


def _cmd_run(args) -> int:
    from hsutils.running import batch

    return batch.run_one(args.notebook, muni=args.muni,
                         params=Path(args.params) if args.params else None,
                         out=Path(args.out) if args.out else None)


def _cmd_figures(args) -> int:
    from hsutils.publish import report

    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"フォルダ {folder} が見つかりません（一括実行の出力フォルダ、例: outputs/demo を指定してください）")
        return 2
    packs = report.print_packs(folder)
    if not packs:
        print(f"{folder} の下に図（figures/*.png）がありません")
        return 1
    print(f"印刷用 PDF を {len(packs):,} 件作成しました（ノートブックの出力フォルダごとに {report.PRINT_PACK}）")
    from hsutils.running import batch

    if batch.refresh_index(folder):
        print(f"一覧（{folder / batch.INDEX_NAME}）から各 PDF にリンクしました")
    return 0


def _cmd_prepare(args) -> int:
    from hsutils.analysis import pipeline

    from hsutils.core import settings

    path = pipeline.prepare_cache(Path(args.data), settings.cache_dir(args.cache), column_map=args.column_map,
                                  scheduler=args.scheduler, workers=args.workers, show_progress=True)
    print(f"集計キャッシュを作成しました: {Path(path).resolve()}")
    return 0


def _scheduler_options(parser) -> None:
    parser.add_argument("--scheduler", default=None,
                        help="Dask クラスタのスケジューラのアドレス（例: tcp://10.0.0.5:8786）。"
                             "既定: このPCのコア数・メモリに合わせた LocalCluster（設定不要）")
    parser.add_argument("--workers", type=int, default=None, help="LocalCluster のワーカー数（既定: 自動）")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hsutils", description="ヘルスサポート分析ワークブック", epilog=EPILOG)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="デモ用の架空データ（石川県19市町）を作成")
    d.add_argument("--out", default="data/demo")
    d.add_argument("--scale", type=float, default=1.0, help="人数の倍率（1.0 = 既定）")
    d.add_argument("--seed", type=int, default=2024)
    d.add_argument("--encoding", default="cp932", choices=["cp932", "utf-8", "utf-8-sig"])
    d.add_argument("--claims-format", default="uke", choices=["uke", "csv"],
                   help="レセプトの形式: uke = レセプト電算処理ファイル（uke/）＋合成マスター（既定）、"
                        "csv = claims_monthly.csv（CSVテンプレート）")
    d.add_argument("--kenshin-format", default="xml", choices=["xml", "csv"],
                   help="健診の形式: xml = 特定健診XMLアーカイブ（既定）、csv = kenshin.csv（CSVテンプレート）")
    d.add_argument("--streamed", action="store_true",
                   help="大きな規模（例: --scale 40 ≈ 東京都）を scale 1 ずつのブロックに分けて、少ないメモリで作成。"
                        "表ごとに1ファイル（--format）。健診・レセプトは CSV テンプレートの表（XML・UKE ではありません）")
    d.add_argument("--format", default="parquet", choices=["parquet", "csv"],
                   help="--streamed のファイル形式（既定: parquet）")
    d.set_defaults(func=_cmd_demo)

    c = sub.add_parser("check", help="入力フォルダを検証し、データ品質の要約を表示（分析はしない）")
    c.add_argument("folder")
    c.add_argument("--column-map", default=None, help="列名対応表（YAML）")
    c.set_defaults(func=_cmd_check)

    g = sub.add_parser("gallery", help="すべてのグラフ種類をデモデータで描画")
    g.add_argument("--out", default="outputs/gallery")
    g.add_argument("--data", default=None, help="データフォルダ（省略時はデモデータを作成）")
    g.set_defaults(func=_cmd_gallery)

    b = sub.add_parser("batch", help="全ノートブック × 全市町村を一括実行")
    b.add_argument("params", help="実行パラメータ（YAML）例: parameters/demo.yaml")
    b.add_argument("--out", default=None)
    b.add_argument("--jobs", type=int, default=None, help="並列数（既定: CPUコア数。--scheduler のときはクラスタのワーカーが決めます）")
    b.add_argument("--resume", action="store_true", help="前回成功し入力が変わっていない実行を省略")
    b.add_argument("--scheduler", default=None,
                   help="Dask クラスタのスケジューラ（例: tcp://10.0.0.5:8786）。共通の集計と各ノートブックの実行を"
                        "そのクラスタのワーカーで行います（出力は共有フォルダへ）。既定: 共通の集計はこのPCの "
                        "LocalCluster、ノートブックはこのPCの作業プロセス")
    b.set_defaults(func=_cmd_batch)

    r = sub.add_parser("run", help="1つのノートブックを1市町村について実行")
    r.add_argument("notebook")
    r.add_argument("--muni", default=None, help="市町村コード（例: 17201）")
    r.add_argument("--params", default=None)
    r.add_argument("--out", default=None)
    r.set_defaults(func=_cmd_run)

    f = sub.add_parser("figures", help="出力フォルダの図（PNG 300dpi）から印刷用 PDF を作成（委員会資料用）")
    f.add_argument("folder", help="一括実行の出力フォルダ（例: outputs/demo）またはその下の市町村・ノートブックのフォルダ")
    f.set_defaults(func=_cmd_figures)

    w = sub.add_parser("workers", help="Dask クラスタのワーカーが一括実行に使えるかを確認（hsutils の版・日本語フォント・共有フォルダ）")
    w.add_argument("folders", nargs="*", help="ワーカーから同じパスで見えるべきフォルダ（データ・パラメータ・出力先など）")
    w.add_argument("--scheduler", default=None, help="スケジューラのアドレス（既定: 環境変数 HSUTILS_SCHEDULER）")
    w.add_argument("--kernel", default="python3", help="ノートブックを実行する Jupyter カーネル（既定: python3）")
    w.set_defaults(func=_cmd_workers)

    pr = sub.add_parser("prepare", help="データを読み込み、共有の集計キャッシュ（Parquet）を作成")
    pr.add_argument("data")
    pr.add_argument("--cache", default=None,
                    help="キャッシュの作成先（既定: outputs/interactive/confidential/cache。個人単位のデータを含みます）")
    pr.add_argument("--column-map", default=None)
    _scheduler_options(pr)
    pr.set_defaults(func=_cmd_prepare)
    return p


EPILOG = """終了コード: 0 すべて成功 / 1 一部の実行が失敗（check: データに問題あり）/
2 パラメータ・データ・出力先の問題（実行前に検出）/ 3 中断 / 4 内部エラー（詳細はログ）"""


def main(argv: list[str] | None = None) -> int:
    """Exit codes: see `hsutils.running.batch.EXIT_*` and the README「夜間の一括実行で困ったとき」."""
    args = build_parser().parse_args(argv)
    from hsutils.running import batch
    from hsutils.core.errors import HsutilsError

    try:
        return int(args.func(args) or 0)
    except HsutilsError as e:
        print(f"エラー: {e}", file=sys.stderr)
        return batch.EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("中断しました。", file=sys.stderr)
        return batch.EXIT_INTERRUPTED
    except OSError as e:  # e.g. an output folder without write permission, a full disk
        print(f"エラー: {e.filename or ''} を読み書きできません（{batch._os_reason(e)}）。", file=sys.stderr)
        batch._log_internal_error(None, e)
        return batch.EXIT_INPUT_ERROR
    except Exception as e:  # noqa: BLE001 - a traceback belongs in a log, not on the console
        log = batch._log_internal_error(None, e)
        print(f"内部エラーが発生しました（{type(e).__name__}）。詳しい内容はログにあります: {log}", file=sys.stderr)
        return batch.EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
