# bash completion for fdholderd(8): its flags and their values. Installed
# in /usr/share/bash-completion/completions/fdholderd.
_fdholderd() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
	COMPREPLY=()
	case $prev in
	--socket | -socket | --policy | -policy)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--socket-group | -socket-group)
		COMPREPLY=($(compgen -g -- "$cur"))
		return
		;;
	--log-format | -log-format)
		COMPREPLY=($(compgen -W 'console json' -- "$cur"))
		return
		;;
	--log-level | -log-level)
		COMPREPLY=($(compgen -W 'debug info warn error' -- "$cur"))
		return
		;;
	--socket-mode | -socket-mode | --max-conns | -max-conns | --max-conns-per-uid | -max-conns-per-uid | \
		--max-entries | -max-entries | --max-entries-per-uid | -max-entries-per-uid | --idle-timeout | -idle-timeout | \
		--request-timeout | -request-timeout | --fd-reserve | -fd-reserve | \
		--metrics-address | -metrics-address | --metrics-max-listeners | -metrics-max-listeners)
		return
		;;
	esac
	COMPREPLY=($(compgen -W '--socket --socket-mode --socket-group --policy --max-conns
		--max-conns-per-uid --max-entries --max-entries-per-uid --idle-timeout --request-timeout --fd-reserve
		--log-format --log-level --metrics-address --metrics-max-listeners --check --version
		--help -h' -- "$cur"))
}
complete -F _fdholderd fdholderd
