"""The dashboard's stylesheet: dense tables, right-aligned tabular numbers, meaningful colour.

Colours come from JupyterLab's theme variables (with fallbacks), so the light and dark
themes both read well: green up, red down, amber warning, and one unmistakable red for LIVE
and for the kill switch. Every class is prefixed `tl-` to stay out of JupyterLab's way.
"""

from __future__ import annotations

UP = "var(--jp-success-color1, #1a7f37)"
DOWN = "var(--jp-error-color1, #cf222e)"
WARN = "var(--jp-warn-color1, #bf8700)"
PAPER = "#0b5cad"
LIVE = "#c4161c"

CSS = f"""
<style>
/* ipywidgets' Layout has no gap: every box of the dashboard spaces its children here. */
.tl-dash .widget-box {{ gap: 6px; }}
.tl-dash .widget-box.tl-tight {{ gap: 4px; }}
.tl-dash {{ font-family: var(--jp-ui-font-family); font-size: 12.5px;
  color: var(--jp-ui-font-color1); line-height: 1.35; }}
.tl-dash .widget-html-content {{ font-size: 12.5px; line-height: 1.35; }}
.tl-frame-live {{ border-top: 5px solid {LIVE}; }}
.tl-frame-paper {{ border-top: 5px solid {PAPER}; }}
.tl-card {{ border: 1px solid var(--jp-border-color2); border-radius: 4px; padding: 6px 8px;
  background: var(--jp-layout-color0); }}
.tl-h {{ font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .04em;
  color: var(--jp-ui-font-color2); margin: 0 0 4px 0; display: flex; gap: 8px;
  align-items: baseline; }}
.tl-h .tl-sub {{ text-transform: none; letter-spacing: 0; font-weight: 400; }}
.tl-sub {{ color: var(--jp-ui-font-color2); font-size: 11.5px; }}
.tl-up {{ color: {UP}; }}
.tl-down {{ color: {DOWN}; }}
.tl-flat {{ color: var(--jp-ui-font-color1); }}
.tl-warn {{ color: {WARN}; }}
.tl-num {{ font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; }}
table.tl-table {{ border-collapse: collapse; width: 100%; }}
table.tl-table th {{ font-weight: 600; color: var(--jp-ui-font-color2); text-align: right;
  border-bottom: 1px solid var(--jp-border-color1); padding: 3px 7px; white-space: nowrap;
  font-size: 11.5px; }}
table.tl-table td {{ padding: 3px 7px; border-bottom: 1px solid var(--jp-border-color3);
  white-space: nowrap; }}
table.tl-table tr:hover td {{ background: var(--jp-layout-color2); }}
table.tl-table .tl-l {{ text-align: left; }}
table.tl-table td.tl-l {{ font-variant-numeric: tabular-nums; }}
.tl-scroll {{ overflow-x: auto; max-width: 100%; }}
.tl-feed td.tl-nowrap, td.tl-nowrap {{ white-space: nowrap !important; }}
.tl-empty {{ color: var(--jp-ui-font-color2); padding: 10px 4px; font-style: italic; }}
.tl-side-buy {{ color: {UP}; font-weight: 600; }}
.tl-side-sell {{ color: {DOWN}; font-weight: 600; }}
.tl-status {{ display: flex; flex-wrap: wrap; gap: 6px; align-items: stretch; }}
.tl-badge {{ display: inline-flex; flex-direction: column; justify-content: center;
  padding: 2px 8px; border-radius: 4px; border: 1px solid var(--jp-border-color2);
  background: var(--jp-layout-color0); }}
.tl-badge b {{ font-size: 12.5px; white-space: nowrap; }}
.tl-badge .tl-sub {{ font-size: 10.5px; white-space: nowrap; }}
.tl-mode {{ color: #fff; border: none; min-width: 120px; text-align: center; }}
.tl-mode b {{ font-size: 20px; letter-spacing: .08em; }}
.tl-mode .tl-sub {{ color: #fff; opacity: .9; }}
.tl-mode-live {{ background: {LIVE}; }}
.tl-mode-paper {{ background: {PAPER}; }}
.tl-ok {{ border-left: 4px solid {UP}; }}
.tl-bad {{ border-left: 4px solid {DOWN}; }}
.tl-caution {{ border-left: 4px solid {WARN}; }}
.tl-idle {{ border-left: 4px solid var(--jp-border-color1); }}
.tl-killbar {{ background: {DOWN}; color: #fff; font-weight: 600; padding: 7px 10px;
  border-radius: 4px; font-size: 14px; }}
.tl-killbar .tl-sub {{ color: #fff; opacity: .9; font-weight: 400; font-size: 12px; }}
.tl-notice {{ border-left: 4px solid {WARN}; background: var(--jp-layout-color2);
  padding: 4px 8px; margin: 2px 0; }}
.tl-metrics {{ display: grid; grid-template-columns: repeat(7, minmax(120px, 1fr)); gap: 6px; }}
.tl-metric {{ border: 1px solid var(--jp-border-color2); border-radius: 4px; padding: 5px 8px;
  background: var(--jp-layout-color0); }}
.tl-metric .tl-label {{ color: var(--jp-ui-font-color2); font-size: 11px;
  text-transform: uppercase; letter-spacing: .04em; }}
.tl-metric .tl-value {{ font-size: 17px; font-weight: 600; font-variant-numeric: tabular-nums;
  white-space: nowrap; }}
.tl-metric .tl-target {{ font-size: 11px; white-space: nowrap; }}
.tl-metric.tl-met {{ border-top: 3px solid {UP}; }}
.tl-metric.tl-missed {{ border-top: 3px solid {DOWN}; }}
.tl-metric.tl-none {{ border-top: 3px solid var(--jp-border-color2); }}
.tl-meter {{ position: relative; height: 10px; background: var(--jp-layout-color3);
  border-radius: 2px; margin: 3px 0 2px 0; }}
.tl-meter > span {{ position: absolute; top: 0; bottom: 0; left: 0; border-radius: 2px; }}
.tl-meter > i {{ position: absolute; top: -3px; bottom: -3px; width: 2px;
  background: var(--jp-ui-font-color1); }}
.tl-feed {{ max-height: 260px; overflow-y: auto; }}
.tl-feed td {{ white-space: normal !important; vertical-align: top; }}
.tl-sev {{ font-weight: 700; font-size: 10.5px; padding: 0 4px; border-radius: 3px;
  color: #fff; }}
.tl-sev-critical {{ background: {DOWN}; }}
.tl-sev-warning {{ background: {WARN}; }}
.tl-sev-info {{ background: var(--jp-ui-font-color3, #888); }}
.tl-result-ok {{ color: {UP}; font-weight: 600; }}
.tl-result-bad {{ color: {DOWN}; font-weight: 600; white-space: normal; }}
.tl-kv td {{ padding: 1px 6px 1px 0; border: none !important; }}
.tl-stop button, button.tl-stop {{ font-weight: 700; }}
.tl-pager {{ color: var(--jp-ui-font-color2); }}
</style>
"""
