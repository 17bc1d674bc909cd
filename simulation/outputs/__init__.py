"""What a person reads: figures, HTML/Markdown reports, and Hugging Face Hub
import and export. Everything here reads saved results, never live objects."""

from marketplace._lazy import lazy_exports

_EXPORTS = {
    "plot": "plots",
    "load_run": "plots",
    "load_study": "plots",
    "run_figures": "plots",
    "study_figures": "plots",
    "study_summary": "plots",
    "save_figures": "plots",
    "OutputsError": "plots",
    "write_report": "report",
    "HubClient": "hub",
    "RecordedHubClient": "hub",
    "export_version": "hub",
    "register_models": "hub",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
