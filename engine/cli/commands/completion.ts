import { Argument, type Command } from 'commander';
import { SHELLS, completionScript, type Shell } from '../completion.ts';
import type { RegisterCommand } from './types.ts';

/** `fleet completion bash|zsh|fish`: print the shell's completion script (generated from the command definitions). */
export const registerCompletion: RegisterCommand = (program: Command, io, setExit) => {
  program
    .command('completion')
    .description('Print a shell completion script: eval "$(fleet completion bash)", or save the fish one in ~/.config/fish/completions/fleet.fish.')
    .addArgument(new Argument('<shell>', 'the shell').choices([...SHELLS]))
    .action((shell: Shell) => {
      io.stdout.write(completionScript(program, shell));
      setExit(0);
    });
};
