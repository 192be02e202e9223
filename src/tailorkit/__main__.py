from tailorkit.cli import main

raise SystemExit(main())
