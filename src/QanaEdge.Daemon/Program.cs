Console.Error.WriteLine("qanad: the daemon is not implemented yet");
return 1;
