from tailorkit.launch import main

raise SystemExit(main())
