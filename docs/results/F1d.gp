# F1d: Test error rescaled to [0,1] per h vs √h α (fc softplus L=5 mnist n=5000 hinge mu=1000) (written by lazyfeat report; data inline)
set encoding utf8
$P0S0 << EOD
0.01 0.4628330996 0.0797221402
0.022 0.3029453015 0.05215807569
0.046 0.4754558205 0.129047502
0.1 0.2945301543 0.1675121675
0.22 0.2208976157 0.1116593647
0.46 0 0.08319938261
1 0.2840112202 0.0932889704
2.2 0.4060308555 0.06448944506
10 0.1388499299 0.1065549504
100 0.6381486676 0.1065918654
1000 1 0.1213973914
10000 0.8485273492 0.09586539967
EOD
set terminal pngcairo enhanced size 560,440 font 'DejaVu Sans,10'
set output "/work/main/docs/results.new/F1d.png"
set multiplot layout 1,1
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title ""
set xlabel "√h α"
set ylabel "(ε - ε_min) / (ε_max - ε_min)"
set logscale x; set format x '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P0S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset multiplot
set terminal svg enhanced size 560,440 font 'DejaVu Sans,10' background '#ffffff'
set output "/work/main/docs/results.new/F1d.svg"
set multiplot layout 1,1
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title ""
set xlabel "√h α"
set ylabel "(ε - ε_min) / (ε_max - ε_min)"
set logscale x; set format x '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P0S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset multiplot
unset output
