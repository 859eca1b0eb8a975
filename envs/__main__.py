"""python -m envs list | inspect SPEC — what environments exist and what one offers.

`list` shows the built-ins and every entry point in group `mcpgym.envs`.
`inspect SPEC` starts the env (a name, `package.module:factory`, or an
`mcpServers` JSON path), prints its settings (isolation, replay of tool results),
its tools with their parameter schemas and its task counts per split, then stops it.
A bad spec is one line and exit code 2.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from common.cli import ArgumentParser, run_cli
from common.flags import add_flag
from contracts import EnvInfraError


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m envs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    ls = sub.add_parser("list", help="built-in and entry-point environments")
    add_flag(ls, "--json", help="print JSON instead of a table")
    show = sub.add_parser("inspect", help="tools (with schemas) and task counts of one environment")
    show.add_argument("spec", help="env name, package.module:factory, or path to an mcpServers JSON")
    add_flag(
        show, "--tasks-file", default=None, aliases=("--tasks",), help="for an mcpServers JSON (default: mcpgym.tasks)"
    )
    add_flag(show, "--json", help="print one JSON document")
    return parser


def _list(as_json: bool) -> int:
    from .registry import available

    entries = available()
    if as_json:
        print(json.dumps([e.__dict__ for e in entries], indent=2))
        return 0
    width = max([len(e.name) for e in entries] + [4])
    print(f"{'name':<{width}}  {'target':<32}  source")
    for e in entries:
        print(f"{e.name:<{width}}  {e.target:<32}  {e.source}")
    return 0


async def _inspect(spec: str, tasks: str | None, as_json: bool) -> int:
    from .registry import load

    kwargs: dict[str, Any] = {"tasks": tasks} if tasks else {}
    env = load(spec, **kwargs)
    async with env:
        tools = await env.tools()
        servers = env.tool_servers()
        counts = {split: len(env.tasks(split)) for split in env.splits()}
    replay = getattr(env, "replay_setting", None)
    if as_json:
        doc = {
            "name": env.name,
            "isolation": env.isolation,
            "disk": env.disk.summary(),
            "replay": replay.model_dump() if replay is not None else None,
            "servers": {n: h.kind for n, h in env.handles.items()},
            "tools": tools,
            "tasks": counts,
            "verifier": env.verifier_ref,
            "default_judge": env.default_judge,
        }
        print(json.dumps(doc, indent=2))
        return 0
    kinds = ", ".join(f"{n} ({h.kind})" for n, h in env.handles.items())
    print(f"env {env.name}: isolation {env.isolation}; servers: {kinds}")
    print(f"verifier: {env.verifier_ref}; default judge: {env.default_judge}")
    for line in _disk_lines(env.disk.summary()):
        print(line)
    print(f"replay of tool results: {replay.describe() if replay is not None else 'off'}")
    print(f"\n{len(tools)} tools:")
    for tool in tools:
        fn = tool["function"]
        summary = (fn.get("description") or "").strip().splitlines()
        print(f"\n  {fn['name']}  [{servers.get(fn['name'], '?')}]  {summary[0] if summary else ''}")
        schema = json.dumps(fn["parameters"], indent=2)
        print("\n".join("    " + line for line in schema.splitlines()))
    print("\ntasks:", ", ".join(f"{s}={n}" for s, n in counts.items()) if counts else "none")
    return 0


def _disk_lines(disk: dict[str, Any]) -> list[str]:
    """State on disk (`envs.episode_dir`, `envs.sandbox`): which servers get a folder per episode, what seeds
    it, and the sandbox."""
    lines = []
    if disk["episode_dir"]:
        seeded = f"workspace {disk['workspace']}" if disk["workspace"] else "empty (no workspace)"
        kept = "; kept after the episode" if disk["keep_episode_dirs"] else ""
        lines.append(f"episode dir: {', '.join(disk['episode_dir'])}; {seeded}{kept}")
    else:
        lines.append("episode dir: none (no server names ${MCPGYM_EPISODE_DIR})")
    sandbox = disk["sandbox"]
    if sandbox is None:
        lines.append("sandbox: none")
    else:
        paths = ", ".join(sandbox["private_paths"]) or "none"
        lines.append(f"sandbox: bubblewrap, private paths {paths}; network {'on' if sandbox['network'] else 'off'}")
    return lines


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "list":
        run_cli(lambda: _list(args.json))
    else:

        async def run() -> int:
            return await _inspect(args.spec, args.tasks_file, args.json)

        # A server that does not start is reported like a bad spec: one line, exit 2.
        run_cli(run, user_errors=(EnvInfraError,))


if __name__ == "__main__":
    main(sys.argv[1:])
