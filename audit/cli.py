"""The ``cvaudit`` command line.

Sub-commands live in their own modules and are imported only when invoked, so
``cvaudit --help`` never imports torch or transformers. Errors the user can fix
(:class:`~cvaudit.audit.errors.CVAuditError`) print one line and exit with code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from cvaudit import __version__

# command name -> "module:attribute" of a click command
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("cvaudit.audit.cli_data:data", "Show a country's subgroups, their sizes and the usable questions."),
    "run": ("cvaudit.audit.cli_run:run", "Audit a model: score every question for every subgroup, write results and report."),
    "demo": ("cvaudit.audit.cli_run:demo", "Run the demo audit (embedded SmolLM2, synthetic Singapore sample)."),
    "report": ("cvaudit.reports.cli:report", "Render the HTML/PDF audit report from results.json."),
    "compare": ("cvaudit.reports.cli:compare", "Compare two results files with paired bootstrap intervals."),
    "gate": ("cvaudit.reports.cli:gate", "CI gate: check results.json against a policy (exit 0 pass, 1 breach, 2 bad input)."),
    "export": ("cvaudit.reports.cli:export", "Export per-group results as model-card metrics and a HF model-index snippet."),
    "synth": ("cvaudit.audit.cli_data:synth", "Write a synthetic WVS-format respondent file (for demos and tests)."),
    "steer": ("cvaudit.audit.cli_steer:steer", "Fit steering vectors (contrastive activation addition)."),
    "finetune": ("cvaudit.audit.cli_finetune:finetune", "LoRA fine-tune on subgroup modal answers (seed 003 split)."),
    "bench": ("cvaudit.audit.cli_bench:bench", "Benchmark the scoring engine against the anchors."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("cvaudit"):
                # a command announced but not built in this install
                @click.command(name=name, help=COMMANDS[name][1])
                def _missing() -> None:
                    raise click.ClickException(f"the '{name}' command is not available in this build")

                return _missing
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cvaudit")
@click.option("--debug", is_flag=True, envvar="CVAUDIT_DEBUG", help="Also print the traceback of an error (exit codes stay the same).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """cvaudit: audit how well a language model reflects the values of a country's subgroups (WVS Wave 7)."""
    ctx.obj = {"debug": debug}


try:  # click >= 8.2 raises this for a group called without a command
    from click.exceptions import NoArgsIsHelpError as NoArgsIsHelp
except ImportError:  # older click prints the help and exits 0 by itself
    class NoArgsIsHelp(Exception):  # type: ignore[no-redef]
        pass


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail on a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def echo_safely(message: str) -> None:
    """click.echo that survives a closed stdout (`cvaudit gate ... | grep -q`): the exit code still counts."""
    try:
        click.echo(message)
    except BrokenPipeError:
        _quiet_stdout()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps user errors to exit code 2 and one line on stderr."""
    from .errors import CVAuditError

    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere before a "--" (`cvaudit run ... --debug` as well as `cvaudit --debug run`)
    end = args.index("--") if "--" in args else len(args)
    flagged = "--debug" in args[:end]
    if flagged:
        args = [a for i, a in enumerate(args) if not (i < end and a == "--debug")]
    debug = flagged or os.environ.get("CVAUDIT_DEBUG") not in (None, "", "0")
    if flagged:
        args = ["--debug", *args]
    if not debug:  # library deprecation notices are for developers; stderr stays one line per problem
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"peft(\.|$)")
    try:
        cli.main(args=args, prog_name="cvaudit", standalone_mode=False)
    except CVAuditError as exc:
        if debug:  # the traceback, but the same exit code: a script or CI still tells bad input from a breach
            traceback.print_exc()
        click.echo(f"cvaudit: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("cvaudit: interrupted; scores computed so far are cached, re-run the same command to resume", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("cvaudit: interrupted; scores computed so far are cached, re-run the same command to resume", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except NoArgsIsHelp as exc:  # `cvaudit` or `cvaudit steer` alone: the help itself, formatted as help
        click.echo(exc.ctx.get_help() if getattr(exc, "ctx", None) is not None else exc.format_message())
        sys.exit(0)
    except click.ClickException as exc:  # usage errors too: one line, no "Usage:/Try" block
        if debug:
            traceback.print_exc()
        click.echo(f"cvaudit: error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(2)
    except SystemExit:
        raise
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, with the shell's SIGPIPE code
        _quiet_stdout()
        sys.exit(141)
    except OSError as exc:  # the environment, not a bug: a full disk, a read-only or missing place
        if debug:
            traceback.print_exc()
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        click.echo(f"cvaudit: error: cannot access{where}: {exc.strerror or exc}; check the path, its "
                   "permissions and the free space", err=True)  # fmt: skip
        sys.exit(2)
    except Exception as exc:  # a bug, not a user error: still one line unless --debug
        if debug:
            traceback.print_exc()
        click.echo(f"cvaudit: internal error: {type(exc).__name__}: {exc} (re-run with --debug for the traceback)", err=True)
        sys.exit(1)
