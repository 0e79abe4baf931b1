# capture.zsh DIR LINE: print what zsh completes for the command line LINE
# (a tab typed after it), one match a line as <<MATCH>>, with the
# completion functions of DIR first in fpath. It runs an interactive zsh
# in a pseudo-terminal (zsh/zpty), wraps compadd to print the matches
# instead of showing them, and ends that shell after one completion. The
# technique of zsh-capture-completion (github.com/Valodim).
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "fpath=($1 \$fpath)"
zpty -w z 'autoload -U compinit; compinit -u -D'
zpty -w z 'compadd () {
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi
  typeset -a __hits
  builtin compadd -A __hits "$@"
  local h
  for h in $__hits; do print -r -- "<<$h>>"; done
}'
zpty -w z 'zstyle ":completion:*" list-grouped false'
zpty -w z 'bindkey "^I" complete-word'
zpty -w z 'null-line () { echo -E - $'"'"'\0'"'"' }'
zpty -w z 'compprefuncs=( null-line )'
zpty -w z 'comppostfuncs=( null-line exit )'
zpty -n -w z "$2"$'\t'
integer tog=0
while zpty -r z; do :; done | while IFS= read -r line; do
  if [[ $line == *$'\0\r' ]]; then (( tog++ )) && return 0 || continue; fi
  (( tog )) && echo -E - $line
done
return 2
