// `fleet completion bash|zsh|fish`: shell completion scripts generated from
// the commander definitions, so a new command or option completes without
// anyone editing a script. Each script completes subcommands by position and
// the options of the command typed so far; option values (a stack folder, a
// plan file) fall back to the shell's file completion, and `--format` (and
// an argument with choices, as `fleet completion SHELL`) completes its choices.
import type { Command, Option } from 'commander';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

interface Node {
  /** Space-joined command path below `fleet`, e.g. "state list"; "" for fleet itself. */
  path: string;
  subcommands: string[];
  /** The choices of its arguments (`fleet completion bash|zsh|fish`). */
  choices: string[];
  options: Option[];
}

function walk(cmd: Command, path: string[] = []): Node[] {
  const visible = cmd.commands.filter((c) => !(c as Command & { _hidden?: boolean })._hidden);
  const node: Node = {
    path: path.join(' '),
    subcommands: visible.map((c) => c.name()),
    choices: cmd.registeredArguments.flatMap((a) => a.argChoices ?? []),
    options: cmd.options.filter((o) => !o.hidden),
  };
  return [node, ...visible.flatMap((c) => walk(c, [...path, c.name()]))];
}

const longFlags = (opts: Option[]): string[] => [...opts.flatMap((o) => [o.long, o.short].filter((f): f is string => Boolean(f))), '--help'];
const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export function completionScript(program: Command, shell: Shell): string {
  const nodes = walk(program);
  if (shell === 'bash') return bash(nodes);
  if (shell === 'zsh') return `#compdef fleet\n# fleet completion for zsh: eval "$(fleet completion zsh)" or save as _fleet in your $fpath.\nautoload -U +X bashcompinit && bashcompinit\n${bash(nodes).replace(/^#.*\n/, '')}`;
  return fish(nodes);
}

function bash(nodes: Node[]): string {
  const cases = nodes
    .map((n) => {
      const words = [...n.subcommands, ...n.choices, ...longFlags(n.options)].join(' ');
      return `    ${quote(n.path)}) words=${quote(words)} ;;`;
    })
    .join('\n');
  const choices = nodes
    .flatMap((n) => n.options.filter((o) => o.argChoices).map((o) => `    ${quote(`${n.path}|${o.long}`)}) COMPREPLY=($(compgen -W ${quote(o.argChoices!.join(' '))} -- "$cur")); return ;;`))
    .join('\n');
  const known = `|${nodes.map((n) => n.path).filter(Boolean).join('|')}|`;
  return `# fleet completion for bash: eval "$(fleet completion bash)" (e.g. in ~/.bashrc)
_fleet() {
  local cur prev path="" next w i words
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    [[ "$w" == -* ]] && continue
    next="\${path:+$path }$w"
    [[ ${quote(known)} == *"|$next|"* ]] && path="$next"
  done
  case "$path|$prev" in
${choices}
  esac
  if [[ "$prev" == --* && "$cur" != -* ]] && [[ " $(_fleet_takes_value "$path") " == *" $prev "* ]]; then
    COMPREPLY=($(compgen -f -- "$cur")); return
  fi
  case "$path" in
${cases}
    *) words="" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
_fleet_takes_value() {
  case "$1" in
${nodes.map((n) => `    ${quote(n.path)}) echo ${quote(n.options.filter((o) => o.required || o.optional).map((o) => o.long).join(' '))} ;;`).join('\n')}
  esac
}
complete -F _fleet fleet
`;
}

function fish(nodes: Node[]): string {
  const lines = ['# fleet completion for fish: fleet completion fish > ~/.config/fish/completions/fleet.fish', 'complete -c fleet -f'];
  for (const n of nodes) {
    const parts = n.path ? n.path.split(' ') : [];
    // Seen exactly this command path (and no deeper subcommand yet).
    const cond = parts.length
      ? `__fish_seen_subcommand_from ${parts.at(-1)}${n.subcommands.length ? `; and not __fish_seen_subcommand_from ${n.subcommands.join(' ')}` : ''}`
      : `not __fish_seen_subcommand_from ${nodes[0].subcommands.join(' ')}`;
    for (const sub of n.subcommands) lines.push(`complete -c fleet -n ${quote(cond)} -a ${sub}`);
    if (n.choices.length) lines.push(`complete -c fleet -n ${quote(cond)} -a ${quote(n.choices.join(' '))}`);
    for (const o of n.options) {
      const long = o.long?.replace(/^--/, '');
      if (!long) continue;
      const value = o.argChoices ? ` -x -a ${quote(o.argChoices.join(' '))}` : o.required || o.optional ? ' -r -F' : '';
      lines.push(`complete -c fleet -n ${quote(cond)} -l ${long}${value} -d ${quote(o.description.split(/[.(]/)[0].trim())}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
